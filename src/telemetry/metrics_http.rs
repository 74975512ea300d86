//! `GET /metrics` on its own port, so scraping never competes with gRPC traffic.

use std::{future::Future, sync::Arc};

use axum::{Router, http::header, response::IntoResponse, routing::get};
use tokio::net::TcpListener;

use super::Metrics;
use crate::store::Store;

/// Serves the Prometheus text format until `shutdown` resolves.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let scrape = move || {
        let metrics = metrics.clone();
        let store = store.clone();
        async move {
            let (in_use, idle) = store.pool_stats();
            metrics.pool(in_use, idle);
            (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                metrics.render(),
            )
                .into_response()
        }
    };
    let app = Router::new().route("/metrics", get(scrape));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
