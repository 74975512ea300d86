//! Browsers as callers: gRPC-Web (tonic-web) on the main port, with CORS from an
//! explicit allow-list of origins (tower-http). A browser needs to send the gRPC-Web
//! and identity headers, and to read the status and its details back.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers a browser may send: gRPC-Web's own, identity, tracing.
const ALLOWED: [&str; 8] = [
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "authorization",
    "x-user-id",
    "x-scopes",
    "traceparent",
];

/// Response headers a browser script may read: the status, and its details
/// (ErrorInfo, the current GameSession of an ABORTED).
const EXPOSED: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// CORS for `origins` (exact `scheme://host[:port]` strings; none: same-origin only).
pub fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers(ALLOWED.map(HeaderName::from_static))
        .expose_headers(EXPOSED.map(HeaderName::from_static))
        .max_age(Duration::from_secs(600))
}
