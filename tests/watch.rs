//! WatchSession: current first, then every later version, on any replica.

mod common;

use std::time::Duration;

use common::{
    redis::{PrivateRedis, shared_redis, unique_prefix},
    *,
};
use serde_json::json;
use session_service::pb::{self, session_service_client::SessionServiceClient};
use tokio_stream::StreamExt;
use tonic::{Code, Streaming, transport::Channel};

type Client = SessionServiceClient<Channel>;

async fn watch(c: &mut Client, id: i64, since: i64) -> Streaming<pb::GameSession> {
    let req = pb::WatchSessionRequest {
        session_id: id,
        since_version: since,
    };
    c.watch_session(as_user(1, req))
        .await
        .expect("watch starts")
        .into_inner()
}

async fn next(stream: &mut Streaming<pb::GameSession>) -> Result<pb::GameSession, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(2), stream.next())
        .await
        .expect("a message within 2 s")
        .expect("stream open")
}

async fn bump(c: &mut Client, id: i64, t: f64) -> i64 {
    let req = pb::UpdateSessionRequest {
        session_id: id,
        world_time: Some(t),
        ..Default::default()
    };
    c.update_session(as_user(1, req))
        .await
        .unwrap()
        .into_inner()
        .version
}

backend_tests! {
    a_watcher_gets_the_current_session_then_every_later_version => current_then_later;
    a_watcher_with_since_version_gets_only_newer_versions => since_version;
    a_deleted_session_ends_the_stream_with_not_found => deleted_ends;
    a_slow_watcher_skips_versions_but_ends_at_the_newest => slow_watcher;
    watching_an_unknown_session_is_not_found => unknown;
    watchers_fall_back_to_polling_while_redis_is_down => polling_fallback;
}

async fn current_then_later(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let mut w = watch(&mut c, s.id, 0).await;
    assert_eq!(next(&mut w).await.unwrap(), s);
    for t in 1..=3 {
        let v = bump(&mut c, s.id, t as f64).await;
        let got = next(&mut w).await.unwrap();
        assert_eq!((got.version, got.world_time), (v, t as f64));
    }
    app.finish().await;
}

async fn since_version(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let mut w = watch(&mut c, s.id, 1).await;
    let v = bump(&mut c, s.id, 5.0).await;
    assert_eq!(next(&mut w).await.unwrap().version, v);
    app.finish().await;
}

async fn deleted_ends(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let mut w = watch(&mut c, s.id, 1).await;
    c.delete_session(as_user(
        1,
        pb::DeleteSessionRequest {
            session_id: s.id,
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    let end = next(&mut w).await.unwrap_err();
    assert_eq!(end.code(), Code::NotFound);
    app.finish().await;
}

async fn slow_watcher(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let mut w = watch(&mut c, s.id, 1).await;
    let mut newest = 1;
    for t in 1..=30 {
        newest = bump(&mut c, s.id, t as f64).await;
    }
    let mut seen = Vec::new();
    while seen.last() != Some(&newest) {
        seen.push(next(&mut w).await.unwrap().version);
    }
    assert!(
        seen.windows(2).all(|p| p[0] < p[1]),
        "strictly increasing: {seen:?}"
    );
    assert_eq!(*seen.last().unwrap(), newest);
    app.finish().await;
}

async fn unknown(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let req = pb::WatchSessionRequest {
        session_id: 404,
        since_version: 0,
    };
    let err = c.watch_session(as_user(1, req)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.finish().await;
}

async fn polling_fallback(backend: Backend) {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |s| {
        s.redis.url = Some(redis.url());
        s.sessions.watch_poll_interval_ms = 100;
    })
    .await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let mut w = watch(&mut c, s.id, 1).await;
    redis.kill();
    // Let the service notice the outage on a command of its own.
    c.get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap();
    let v = bump(&mut c, s.id, 9.0).await;
    let got = next(&mut w).await.unwrap();
    assert_eq!(got.version, v, "a poll of the database delivered it");
    redis.restart().await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watchers_on_one_replica_see_writes_made_on_another() {
    if !Backend::postgres_available() {
        return;
    }
    let Some(url) = shared_redis() else { return };
    let prefix = unique_prefix();
    let db = TestDb::create(Backend::Postgres).await;
    let mut settings = test_settings(&db);
    settings.redis.url = Some(url.clone());
    settings.redis.key_prefix = prefix.clone();
    let db_b = TestDb::same_as(&db);
    let a = TestApp::start(db, settings.clone()).await;
    let b = TestApp::start(db_b, settings).await;
    let mut ca = a.client().await;
    let mut cb = b.client().await;
    let s = create(&mut cb, 1, json!({})).await;
    let mut w = watch(&mut ca, s.id, 1).await;
    // Both replicas' notice subscriptions have reached Redis.
    let channel = format!("{prefix}session-updates");
    common::eventually("both replicas subscribed", Duration::from_secs(5), || async {
        (common::redis::subscribers(&url, &channel).await >= 2).then_some(())
    })
    .await;
    for t in 1..=5 {
        let started = std::time::Instant::now();
        let v = bump(&mut cb, s.id, t as f64).await;
        let got = tokio::time::timeout(Duration::from_secs(1), w.next())
            .await
            .expect("within 1 s")
            .unwrap()
            .unwrap();
        assert_eq!(got.version, v);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    b.finish().await;
    a.finish().await;
}
