# session-service container image.
#
#   docker build -t session-service:0.1.0 .
#
# Needs BuildKit (the default builder of Docker 23+ and of `docker buildx`) for the
# RUN --mount cache mounts below; there is no `# syntax=` line, so no frontend image
# is pulled. Base images are pinned by tag; pin them by digest too
# (`image:tag@sha256:...`) where your registry policy asks for it.

############################ build ############################
FROM rust:1.95-bookworm AS build

WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_NET_RETRY=5

# The whole context as filtered by .dockerignore (which keeps out target/, .git,
# helm/, local databases and the like). Copying the tree rather than a list of
# folders keeps the build working when Cargo.toml gains tests, benches or examples
# (cargo refuses a manifest whose declared targets are missing). protobuf codegen
# is pure Rust (protox in build.rs), so no protoc is needed.
COPY . .

# Dependency caching: the cargo registry, git checkouts and the target directory
# are BuildKit cache mounts, so a rebuild after a source change only recompiles the
# workspace crates. The target dir is a cache mount and so is not part of the layer:
# the binary is copied out of it inside the same step.
RUN --mount=type=cache,id=session-service-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=session-service-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=session-service-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin session-service \
 && install -D -m 0755 target/release/session-service /out/session-service

############################ runtime ############################
# distroless/cc: glibc, libgcc, CA certificates (/etc/ssl/certs) and tzdata; no shell,
# no package manager. The :nonroot variant runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

LABEL org.opencontainers.image.title="session-service" \
      org.opencontainers.image.description="Game sessions with optimistic concurrency over gRPC" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT"

COPY --from=build /out/session-service /usr/local/bin/session-service

# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532

# 50051: gRPC (TLS when configured). 9090: Prometheus /metrics when
# SESSION__METRICS__LISTEN is set. The plaintext health-only port
# (SESSION__SERVER__HEALTH_LISTEN, 50052 in the Helm chart) is opt-in and not exposed.
EXPOSE 50051 9090

# No HEALTHCHECK: the orchestrator probes the gRPC health service instead
# (Kubernetes native gRPC probes on the health port).
ENTRYPOINT ["session-service"]
CMD ["serve"]
