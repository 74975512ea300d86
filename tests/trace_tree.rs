//! Trace context across the wire: one UpdateSession makes a span tree under the
//! caller's trace. Its own test binary, because it installs the process-wide
//! subscriber: the SQLite driver's worker threads hold clones of the current span,
//! and when one of them drops the last handle of a child span, tracing-subscriber's
//! registry closes the parent through *that thread's* default subscriber. With a
//! thread-local (`set_default`) subscriber that close went nowhere and the request
//! span was never exported (it failed about half the runs). The server binary
//! installs its subscriber globally, as this test now does.

mod common;

use common::*;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::json;
use session_service::{
    client::{Credentials, SessionClient},
    pb,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// Runs on one thread, in-process with the server, so the server's spans are ours.
#[tokio::test(flavor = "current_thread")]
async fn one_update_produces_a_span_tree_under_the_callers_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "session_service=debug,trace_tree=debug",
        ))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this binary");

    let app = TestApp::spawn(Backend::Sqlite).await;
    let client = SessionClient::new(app.channel().await).with_credentials(Credentials::UserId(1));
    let s = client
        .create(session_service::client::create_request(1, 1, &json!({})))
        .await
        .unwrap();

    let caller = tracing::info_span!("game.save");
    let trace_id = caller.context().span().span_context().trace_id();
    let caller_span_id = caller.context().span().span_context().span_id();
    let update = pb::UpdateSessionRequest {
        session_id: s.id,
        world_time: Some(3.0),
        expected_version: Some(1),
        ..Default::default()
    };
    tracing::Instrument::instrument(client.update(update), caller)
        .await
        .unwrap();
    app.finish().await;

    // A span ends when its last handle drops, and that can be on a SQLite worker
    // thread a moment after the reply arrived: wait for the request span a little.
    const REQUEST: &str = "pixsim.session.v1.SessionService/UpdateSession";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let ours = loop {
        provider.force_flush().unwrap();
        let ours: Vec<_> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|span| span.span_context.trace_id() == trace_id)
            .collect();
        if ours.iter().any(|span| span.name == REQUEST) || tokio::time::Instant::now() > deadline {
            break ours;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let names: Vec<_> = ours.iter().map(|span| span.name.to_string()).collect();
    let request = ours
        .iter()
        .find(|span| span.name == REQUEST)
        .unwrap_or_else(|| panic!("the server span joined the caller's trace: {names:?}"));
    assert_eq!(
        request.parent_span_id, caller_span_id,
        "child of the caller's span (via traceparent)"
    );
    let write = ours
        .iter()
        .find(|s| s.name == "write")
        .expect("the use-case span");
    assert_eq!(write.parent_span_id, request.span_context.span_id());
    let db = ours
        .iter()
        .find(|s| s.name == "db.compare_and_set")
        .unwrap_or_else(|| panic!("the store span: {names:?}"));
    assert_eq!(db.parent_span_id, write.span_context.span_id());
    let attr = |k: &str| {
        write
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr("session_id").as_deref(), Some(s.id.to_string().as_str()));
    assert_eq!(attr("expected_version").as_deref(), Some("1"));
    assert_eq!(attr("user_id").as_deref(), Some("1"));
    assert_eq!(attr("outcome").as_deref(), Some("ok"));
}
