//! `Application`: builds everything from settings and runs until told to stop.
//! `main` and the integration tests start the service the same way.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{service::interceptor::InterceptedService, transport::Server};
use tonic_health::{pb::health_server::HealthServer, server::HealthReporter};

use crate::{
    cache::{LocalCache, RedisCache, RedisSettings, SessionCache},
    config::{AuthModeName, Settings},
    domain::JsonLimits,
    grpc::{
        SessionApi,
        auth::{AuthSetupError, Authenticator},
        coalesce::Coalesced,
        edge::EdgeLayer,
        health::{self, Health},
        tls::ReloadingTls,
    },
    pb::{self, session_service_server::SessionServiceServer},
    service::{ServiceSettings, Sessions},
    store::{Store, StoreError, StoreSettings},
    telemetry::{Metrics, serve_metrics},
};

/// Why the service could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "refusing to serve without verified identity on non-loopback address {0}: set auth.mode, or pass --insecure-allow-no-auth"
    )]
    InsecureExposure(SocketAddr),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("{0}")]
    Auth(#[from] AuthSetupError),
    #[error("tls: {0}")]
    Tls(String),
    #[error("{0}")]
    Other(String),
}

/// A built, bound, not yet serving service.
pub struct Application {
    settings: Settings,
    listener: TcpListener,
    /// The plaintext probe port (`server.health_listen`), taken when it starts.
    health_listener: Option<TcpListener>,
    /// The `/metrics` endpoint (`metrics.listen`), taken when it starts.
    metrics_listener: Option<TcpListener>,
    sessions: Sessions,
    /// The same store the use cases hold: health probes it, metrics read its pools,
    /// and it is closed last.
    store: Store,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })
}

/// The store's settings from the configuration (`serve` and `migrate` alike).
pub fn store_settings(s: &Settings) -> StoreSettings {
    StoreSettings {
        url: s.database.url.clone(),
        max_connections: s.database.max_connections,
        acquire_timeout: Duration::from_millis(s.database.acquire_timeout_ms),
        max_events_per_session: s.database.max_events_per_session,
        write_workers: s.database.write_workers,
        max_batch: s.database.max_batch,
        overlap_batch: s.database.overlap_batch,
        lock_timeout: Some(s.request_timeout() * 4 / 5),
    }
}

fn service_settings(s: &Settings) -> ServiceSettings {
    let r = &s.sessions;
    ServiceSettings {
        json_limits: JsonLimits {
            max_bytes: r.max_json_bytes,
            max_depth: r.max_json_depth,
        },
        request_id_ttl: Duration::from_secs(r.request_id_ttl_secs),
        watch_poll_interval: Duration::from_millis(r.watch_poll_interval_ms),
        renormalize_batch: r.renormalize_batch,
        renormalize_sweep: Duration::from_secs(r.renormalize_sweep_secs),
        max_folded_writes: r.max_folded_writes.max(1),
    }
}

async fn cache(s: &Settings, metrics: &Arc<Metrics>) -> Result<Arc<dyn SessionCache>, StartupError> {
    let r = &s.redis;
    let ttl = Duration::from_secs(r.ttl_secs);
    let tombstone_ttl = Duration::from_secs(r.tombstone_ttl_secs);
    Ok(match &r.url {
        Some(url) => {
            let settings = RedisSettings {
                url: url.clone(),
                key_prefix: r.key_prefix.clone(),
                pool_size: r.pool_size,
                command_timeout: Duration::from_millis(r.command_timeout_ms),
                confirm_wait: Duration::from_millis(r.confirm_wait_ms),
                ttl,
                tombstone_ttl,
            };
            RedisCache::start(&settings, metrics.clone()).await?
        }
        None => Arc::new(LocalCache::new(
            r.local_capacity,
            ttl,
            tombstone_ttl,
            metrics.clone(),
        )),
    })
}

impl Application {
    /// Connects, migrates (unless disabled) and binds the listeners.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let listen = settings.server.listen;
        let exposed = !listen.ip().is_loopback();
        if settings.auth.mode == AuthModeName::None && exposed {
            if !settings.server.insecure_allow_no_auth {
                return Err(StartupError::InsecureExposure(listen));
            }
            tracing::warn!(%listen, "serving WITHOUT verified identity (--insecure-allow-no-auth): x-user-id is trusted as sent");
        }
        let metrics = Arc::new(Metrics::new());
        let store = Store::connect(&store_settings(&settings)).await?;
        if settings.database.migrate_on_start {
            store.migrate_up(None).await?;
        }
        let batches = metrics.clone();
        store.observe_batches(Arc::new(move |n| batches.write_batch_size.observe(n as f64)));
        let cache = cache(&settings, &metrics).await?;
        let shutdown = CancellationToken::new();
        let sessions = Sessions::new(
            store.clone(),
            cache,
            metrics.clone(),
            service_settings(&settings),
            shutdown.clone(),
        );
        let listener = bind(listen).await?;
        let health_listener = match settings.server.health_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let metrics_listener = match settings.metrics.listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self {
            settings,
            listener,
            health_listener,
            metrics_listener,
            sessions,
            store,
            metrics,
            shutdown,
        })
    }

    /// The bound gRPC address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `signal` resolves, then stops accepting, reports NOT_SERVING,
    /// ends watch streams, and waits up to `shutdown_grace_secs` for in-flight requests.
    pub async fn run_until(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let health = self.start_health(reporter).await?;
        self.sessions.spawn_background();
        self.start_metrics_endpoint();
        let stop = self.stop_after(signal, health);
        let store = self.store.clone();
        self.serve(health_service, stop).await?;
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }

    /// Health: SERVING on the main port (`reporter`) and the probe port, if any
    /// (which serves only health and reflection), kept current by a database probe.
    async fn start_health(&mut self, reporter: HealthReporter) -> Result<Health, StartupError> {
        let probe_port = self
            .health_listener
            .take()
            .map(|listener| (listener, tonic_health::server::health_reporter()));
        let health = Health::new(reporter, probe_port.as_ref().map(|(_, (r, _))| r.clone()));
        health.start().await;
        let every = Duration::from_millis(self.settings.database.health_probe_interval_ms.max(100));
        let probe = health::probe_forever(self.store.clone(), health.clone(), every, self.shutdown.clone());
        tokio::spawn(probe);
        if let Some((listener, (_, probe_service))) = probe_port {
            let (v1, v1alpha) = reflection(self.settings.server.reflection)?;
            let router = Server::builder()
                .add_service(probe_service)
                .add_optional_service(v1)
                .add_optional_service(v1alpha);
            let stop = self.shutdown.clone().cancelled_owned();
            let coalesce = self.settings.server.coalesce_writes;
            tokio::spawn(router.serve_with_incoming_shutdown(incoming(listener, coalesce), stop));
        }
        Ok(health)
    }

    /// Prometheus `/metrics`, if `metrics.listen` is set.
    fn start_metrics_endpoint(&mut self) {
        if let Some(listener) = self.metrics_listener.take() {
            let stop = self.shutdown.clone().cancelled_owned();
            let serve = serve_metrics(listener, self.metrics.clone(), self.store.clone(), stop);
            tokio::spawn(serve);
        }
    }

    /// Resolves when the server should stop accepting: after `signal`, once health
    /// says NOT_SERVING and watch streams and background tasks are told to end.
    fn stop_after(
        &self,
        signal: impl Future<Output = ()> + Send + 'static,
        health: Health,
    ) -> impl Future<Output = ()> + Send + 'static {
        let shutdown = self.shutdown.clone();
        async move {
            signal.await;
            tracing::info!("stopping: draining in-flight requests");
            health.stopping().await;
            shutdown.cancel();
        }
    }

    /// The main port: the edge layer (metrics, limits, timeouts) around health,
    /// reflection and the authenticated SessionService, with gRPC-Web and CORS in
    /// front when `server.grpc_web` is on, over TLS if configured, until `stop`, then
    /// at most `shutdown_grace_secs` more.
    async fn serve(
        self,
        health_service: HealthServer<impl tonic_health::pb::health_server::Health>,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let settings = &self.settings;
        let server = &settings.server;
        let edge = EdgeLayer::new(
            self.metrics.clone(),
            server.concurrency_limit,
            settings.request_timeout(),
        );
        let api = SessionServiceServer::new(SessionApi::new(self.sessions.clone()))
            .max_decoding_message_size(server.max_message_bytes)
            .max_encoding_message_size(server.max_message_bytes.max(4 * 1024 * 1024));
        let auth = Authenticator::from_settings(settings)?;
        let (v1, v1alpha) = reflection(server.reflection)?;
        let tls =
            ReloadingTls::from_settings(&settings.tls, self.metrics.clone()).map_err(StartupError::Tls)?;
        let shutdown = self.shutdown.clone();
        match &tls {
            Some(tls) => {
                let every = Duration::from_millis(settings.tls.reload_interval_ms);
                tokio::spawn(tls.clone().reload_forever(every, shutdown.clone()));
            }
            None => drop(tokio::spawn(crate::grpc::tls::hangup_without_tls(
                shutdown.clone(),
            ))),
        }
        let listen = self.local_addr();
        let coalesce = server.coalesce_writes;
        // The two router types differ (gRPC-Web changes the body type), and so do the
        // two connection types (TLS or not): one expansion each.
        macro_rules! routes {
            ($builder:expr) => {
                $builder
                    .http2_keepalive_interval(Some(Duration::from_secs(
                        server.http2_keepalive_interval_secs,
                    )))
                    .http2_keepalive_timeout(Some(Duration::from_secs(
                        server.http2_keepalive_timeout_secs,
                    )))
                    .add_service(health_service)
                    .add_optional_service(v1)
                    .add_optional_service(v1alpha)
                    .add_service(InterceptedService::new(api, auth))
            };
        }
        macro_rules! serving {
            ($router:expr) => {
                match tls {
                    Some(tls) => {
                        let accepted =
                            crate::grpc::tls::incoming(self.listener, tls, shutdown.clone(), coalesce);
                        Box::pin($router.serve_with_incoming_shutdown(accepted, stop)) as Serving<'_>
                    }
                    None => Box::pin(
                        $router.serve_with_incoming_shutdown(incoming(self.listener, coalesce), stop),
                    ),
                }
            };
        }
        let serve = if server.grpc_web {
            let builder = Server::builder()
                .accept_http1(true)
                .layer(crate::grpc::web::cors(&server.cors_allowed_origins))
                .layer(tonic_web::GrpcWebLayer::new())
                .layer(edge);
            serving!(routes!(builder))
        } else {
            serving!(routes!(Server::builder().layer(edge)))
        };
        tracing::info!(%listen, grpc_web = server.grpc_web, "serving");
        until_grace(serve, &shutdown, Duration::from_secs(server.shutdown_grace_secs)).await
    }
}

type Serving<'a> = BoxFuture<'a, Result<(), tonic::transport::Error>>;

/// Runs `serve` to its end, or until `grace` after the shutdown began.
async fn until_grace(
    serve: Serving<'_>,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Result<(), StartupError> {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = serve => served?,
        _ = deadline => tracing::warn!(grace_secs = grace.as_secs(), "grace period over: stopping with requests in flight"),
    }
    Ok(())
}

/// Accepted connections with Nagle's algorithm off: a response is several small
/// HTTP/2 frames, and Nagle plus delayed ACKs would hold the last one back ~40 ms.
/// Each turn's frames are written at once instead (see [`Coalesced`]).
fn incoming(
    listener: TcpListener,
    coalesce: bool,
) -> impl futures::Stream<Item = std::io::Result<Coalesced<tokio::net::TcpStream>>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(move |conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(Coalesced::new(conn, coalesce))
    })
}

type Reflection<T> = Option<T>;

/// Reflection v1 and v1alpha (grpcurl 1.8 speaks only v1alpha), describing our
/// contract, the standard error details, and health.
#[allow(clippy::type_complexity)]
fn reflection(
    enabled: bool,
) -> Result<
    (
        Reflection<
            tonic_reflection::server::v1::ServerReflectionServer<
                impl tonic_reflection::server::v1::ServerReflection,
            >,
        >,
        Reflection<
            tonic_reflection::server::v1alpha::ServerReflectionServer<
                impl tonic_reflection::server::v1alpha::ServerReflection,
            >,
        >,
    ),
    StartupError,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    if !enabled {
        return Ok((None, None));
    }
    Ok((Some(builder().build_v1()?), Some(builder().build_v1alpha()?)))
}
