//! Reading the server's /metrics in tests.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TestApp;

/// Settings tweak: serve /metrics on a free loopback port.
pub fn metrics_on(s: &mut session_service::config::Settings) {
    s.metrics.listen = Some(([127, 0, 0, 1], 0).into());
}

/// The Prometheus text of the app's /metrics (metrics must be enabled).
pub async fn scrape(app: &TestApp) -> String {
    let mut stream = tokio::net::TcpStream::connect(app.metrics_addr.expect("metrics on"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    body
}

/// The value of the first series that starts with `series`.
pub fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
