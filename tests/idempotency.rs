//! AIP-155 request ids: a retried write gets the recorded result, never a second apply.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use session_service::pb;
use tonic::Code;

backend_tests! {
    a_repeated_update_returns_the_recorded_session => repeated_update;
    a_retry_after_a_lost_response_is_not_aborted_by_its_own_write => retry_after_own_write;
    a_repeated_increment_is_applied_once => repeated_increment;
    a_repeated_create_creates_one_session => repeated_create;
    a_repeated_delete_succeeds_again => repeated_delete;
    a_request_id_reused_for_another_session_is_refused => reused_elsewhere;
    records_are_forgotten_after_their_ttl => records_expire;
}

async fn repeated_update(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let req = pb::UpdateSessionRequest {
        session_id: s.id,
        flags: Some(obj(json!({"n": 1}))),
        request_id: "req-1".into(),
        ..Default::default()
    };
    let first = c
        .update_session(as_user(1, req.clone()))
        .await
        .unwrap()
        .into_inner();
    let second = c.update_session(as_user(1, req)).await.unwrap().into_inner();
    assert_eq!(first, second);
    assert_eq!(second.version, 2);
    app.finish().await;
}

async fn retry_after_own_write(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({"n": 0})).await;
    let req = pb::UpdateSessionRequest {
        session_id: s.id,
        flags: Some(obj(json!({"n": 1}))),
        expected_version: Some(1),
        request_id: "lost-response".into(),
        ..Default::default()
    };
    let committed = c
        .update_session(as_user(1, req.clone()))
        .await
        .unwrap()
        .into_inner();
    // Someone else writes meanwhile.
    let other = pb::UpdateSessionRequest {
        session_id: s.id,
        world_time: Some(3.0),
        ..Default::default()
    };
    c.update_session(as_user(1, other)).await.unwrap();
    // The retry of the first request: its own write moved the version, but it is recorded.
    let retried = c.update_session(as_user(1, req)).await.unwrap().into_inner();
    assert_eq!(retried, committed, "the session as of the recorded result");
    let now = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.version, 3);
    // A different request with the stale version is still a conflict.
    let stale = pb::UpdateSessionRequest {
        session_id: s.id,
        world_time: Some(9.0),
        expected_version: Some(1),
        request_id: "fresh".into(),
        ..Default::default()
    };
    assert_eq!(
        c.update_session(as_user(1, stale)).await.unwrap_err().code(),
        Code::Aborted
    );
    app.finish().await;
}

async fn repeated_increment(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let first = c
        .mutate_session(as_user(1, increment(s.id, "inc-1")))
        .await
        .unwrap()
        .into_inner();
    let again = c
        .mutate_session(as_user(1, increment(s.id, "inc-1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again);
    c.mutate_session(as_user(1, increment(s.id, "inc-2")))
        .await
        .unwrap();
    let now = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(steps(&now), 2);
    assert_eq!(now.version, 3);
    app.finish().await;
}

async fn repeated_create(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let req = pb::CreateSessionRequest {
        scene_id: 1,
        entry_node_id: 1,
        request_id: "create-1".into(),
        ..Default::default()
    };
    let a = c
        .create_session(as_user(1, req.clone()))
        .await
        .unwrap()
        .into_inner();
    let b = c
        .create_session(as_user(1, req.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(a, b);
    // Another user's identical id is theirs alone.
    let other = c.create_session(as_user(2, req)).await.unwrap().into_inner();
    assert_ne!(other.id, a.id);
    let mine = c
        .list_sessions(as_user(1, pb::ListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.sessions.len(), 1);
    app.finish().await;
}

async fn repeated_delete(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let req = pb::DeleteSessionRequest {
        session_id: s.id,
        expected_version: Some(1),
        request_id: "del".into(),
    };
    c.delete_session(as_user(1, req.clone())).await.unwrap();
    c.delete_session(as_user(1, req))
        .await
        .expect("the retry of a delete that happened succeeds");
    let plain = pb::DeleteSessionRequest {
        session_id: s.id,
        ..Default::default()
    };
    assert_eq!(
        c.delete_session(as_user(1, plain)).await.unwrap_err().code(),
        Code::NotFound
    );
    app.finish().await;
}

async fn reused_elsewhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let a = create(&mut c, 1, json!({})).await;
    let b = create(&mut c, 1, json!({})).await;
    c.mutate_session(as_user(1, increment(a.id, "same")))
        .await
        .unwrap();
    let err = c
        .mutate_session(as_user(1, increment(b.id, "same")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let untouched = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(b.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(untouched.version, 1, "the refused write was rolled back");
    app.finish().await;
}

async fn records_expire(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.sessions.request_id_ttl_secs = 1).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    c.mutate_session(as_user(1, increment(s.id, "short-lived")))
        .await
        .unwrap();
    let mut applied_again = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let r = c
            .mutate_session(as_user(1, increment(s.id, "short-lived")))
            .await
            .unwrap()
            .into_inner();
        if steps(&r) == 2 {
            applied_again = true;
            break;
        }
        assert_eq!(steps(&r), 1, "answered from the record while it is kept");
    }
    assert!(applied_again, "the record was pruned after its TTL");
    app.finish().await;
}
