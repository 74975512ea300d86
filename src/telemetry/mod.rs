//! Logs, traces and metrics.

pub mod logging;
pub mod metrics;
mod metrics_http;
pub mod tracing_otel;

pub use metrics::Metrics;
pub use metrics_http::serve_metrics;
