//! One tower layer in front of every gRPC service, for what cuts across them:
//! the request span (continuing the caller's W3C trace), a global concurrency limit
//! that sheds load with RESOURCE_EXHAUSTED instead of queueing, a per-request
//! timeout answered with DEADLINE_EXCEEDED, and request count / latency metrics by
//! method and status code.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Semaphore;
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};
use tracing::Instrument;

use super::status::{ensure_error_info, exhausted, timed_out};
use crate::{telemetry::Metrics, wire::status::reason};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Settings of the edge.
#[derive(Clone)]
pub struct EdgeLayer {
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl EdgeLayer {
    pub fn new(metrics: Arc<Metrics>, concurrency_limit: usize, timeout: Duration) -> Self {
        Self {
            metrics,
            permits: Arc::new(Semaphore::new(concurrency_limit)),
            timeout,
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            edge: self.clone(),
        }
    }
}

/// The service [`EdgeLayer`] makes.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    edge: EdgeLayer,
}

/// Bounded label values: known services by method, anything else as `other`.
fn method_label(path: &str) -> String {
    let known = ["/pixsim.session.v1.", "/grpc.health.", "/grpc.reflection."];
    if known.iter().any(|k| path.starts_with(k)) {
        path.trim_start_matches('/').to_owned()
    } else {
        "other".to_owned()
    }
}

impl<S> Service<http::Request<Body>> for Edge<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    type Response = http::Response<MeteredBody>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The ready service goes to this call; a clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let edge = self.edge.clone();
        let method = method_label(req.uri().path());
        let span = crate::telemetry::tracing_otel::server_span(&method, req.headers());
        let started = Instant::now();
        Box::pin(
            async move {
                let meter = Meter {
                    method,
                    started,
                    metrics: edge.metrics.clone(),
                    recorded: false,
                };
                // Health checks are never shed: an overloaded replica is still alive.
                let permit = if meter.method.starts_with("grpc.health.") {
                    None
                } else {
                    match edge.permits.clone().try_acquire_owned() {
                        Ok(p) => Some(InFlight::new(p, &edge.metrics)),
                        Err(_) => {
                            let status =
                                exhausted("server overloaded; retry with backoff", reason::OVERLOADED);
                            return Ok(MeteredBody::respond(status.into_http(), meter));
                        }
                    }
                };
                let response = match tokio::time::timeout(edge.timeout, inner.call(req)).await {
                    Ok(Ok(response)) => response,
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => timed_out().into_http(),
                };
                drop(permit);
                Ok(MeteredBody::respond(response, meter))
            }
            .instrument(span),
        )
    }
}

/// A request holding one of the concurrency limit's permits, counted in the
/// in-flight gauge while it does.
struct InFlight {
    _permit: tokio::sync::OwnedSemaphorePermit,
    gauge: prometheus_client::metrics::gauge::Gauge,
}

impl InFlight {
    fn new(permit: tokio::sync::OwnedSemaphorePermit, metrics: &Metrics) -> Self {
        metrics.in_flight.inc();
        Self {
            _permit: permit,
            gauge: metrics.in_flight.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Records one request once its status is known. Dropped before that, the call
/// was cancelled: the client went away, or tonic's own `grpc-timeout` (which sits
/// outside this layer) dropped the call.
struct Meter {
    method: String,
    started: Instant,
    metrics: Arc<Metrics>,
    recorded: bool,
}

impl Meter {
    fn finish(&mut self, code: Code) {
        if !self.recorded {
            self.recorded = true;
            self.metrics
                .request(&self.method, code, self.started.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

fn code_in(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(Code::from_i32(value))
}

pin_project_lite::pin_project! {
    /// The response body, watched for the `grpc-status` trailer to meter the request
    /// (dropped before its trailers, the meter records CANCELLED).
    pub struct MeteredBody {
        #[pin]
        inner: Body,
        meter: Option<Meter>,
    }
}

impl MeteredBody {
    fn respond(mut response: http::Response<Body>, mut meter: Meter) -> http::Response<MeteredBody> {
        ensure_error_info(response.headers_mut());
        // A trailers-only answer (every unary error) has its status in the headers.
        let meter = match code_in(response.headers()) {
            Some(code) => {
                meter.finish(code);
                None
            }
            None => Some(meter),
        };
        response.map(|inner| MeteredBody { inner, meter })
    }
}

impl HttpBody for MeteredBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut frame = ready!(this.inner.poll_frame(cx));
        match &mut frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_mut() {
                    ensure_error_info(trailers);
                    if let Some(mut meter) = this.meter.take() {
                        meter.finish(code_in(trailers).unwrap_or(Code::Unknown));
                    }
                }
            }
            Some(Err(status)) => {
                if let Some(mut meter) = this.meter.take() {
                    meter.finish(status.code());
                }
            }
            None => {
                if let Some(mut meter) = this.meter.take() {
                    meter.finish(Code::Ok);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
