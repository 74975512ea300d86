//! Metrics on /metrics.

mod common;

use std::time::Duration;

use common::{
    metrics::{metrics_on, scrape, value},
    *,
};
use serde_json::json;
use session_service::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_requests_conflicts_replays_cache_pool_and_watch_series() {
    let app = TestApp::spawn_with(Backend::Sqlite, metrics_on).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let get = pb::GetSessionRequest::strong(s.id);
    c.get_session(as_user(1, get)).await.unwrap();
    let stale = pb::UpdateSessionRequest {
        session_id: s.id,
        world_time: Some(1.0),
        expected_version: Some(5),
        ..Default::default()
    };
    c.update_session(as_user(1, stale)).await.unwrap_err();
    let once = pb::UpdateSessionRequest {
        session_id: s.id,
        world_time: Some(2.0),
        request_id: "r1".into(),
        expected_version: Some(1),
        ..Default::default()
    };
    c.update_session(as_user(1, once.clone())).await.unwrap();
    c.update_session(as_user(1, once)).await.unwrap();
    let _watch = c
        .watch_session(as_user(
            1,
            pb::WatchSessionRequest {
                session_id: s.id,
                since_version: 0,
            },
        ))
        .await
        .unwrap();
    let update = "session_grpc_requests_total{method=\"pixsim.session.v1.SessionService/UpdateSession\"";
    // A call is counted as its response ends, which can be just after the client has it.
    let m = common::eventually(
        "the calls and the open watch are counted",
        Duration::from_secs(5),
        || async {
            let m = scrape(&app).await;
            let counted = value(&m, &format!("{update},code=\"Ok\"}}")) == Some(2.0)
                && value(&m, "session_watch_streams_open") == Some(1.0);
            counted.then_some(m)
        },
    )
    .await;
    assert_eq!(
        value(&m, &format!("{update},code=\"Aborted\"}}")),
        Some(1.0),
        "{m}"
    );
    assert_eq!(value(&m, &format!("{update},code=\"Ok\"}}")), Some(2.0));
    assert!(
        m.contains("session_grpc_request_duration_seconds_bucket{le=\"0.001\",method=\"pixsim.session.v1.SessionService/GetSession\",code=\"Ok\"}"),
        "{m}"
    );
    assert_eq!(value(&m, "session_version_conflicts_total"), Some(1.0));
    assert_eq!(value(&m, "session_idempotent_replays_total"), Some(1.0));
    assert!(value(&m, "session_cache_lookups_total{outcome=\"hit\"}").unwrap() >= 1.0);
    assert!(value(&m, "session_db_pool_connections{state=\"idle\"}").is_some());
    assert!(value(&m, "session_db_pool_connections{state=\"in_use\"}").is_some());
    assert_eq!(value(&m, "session_watch_streams_open"), Some(1.0));
    assert!(value(&m, "session_renormalized_sessions_total").is_some());
    assert!(value(&m, "session_renormalize_pending_sessions").is_some());
    app.finish().await;
}
