//! Logs, traces and metrics.

pub mod logging;
pub mod metrics;
mod metrics_http;

pub use metrics::Metrics;
pub use metrics_http::serve_metrics;
