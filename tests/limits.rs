//! Abusive or unlucky traffic gets a clear error, nothing is lost, the server stays up.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sea_orm::{ConnectionTrait, Database, DatabaseTransaction, TransactionTrait};
use serde_json::json;
use session_service::{pb, wire::status::error_info};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// Holds the session's row (PostgreSQL) or the database's write lock (SQLite) in an
/// open transaction, so writes to it wait.
async fn hold_lock(app: &TestApp, session_id: i64) -> (sea_orm::DatabaseConnection, DatabaseTransaction) {
    let db = Database::connect(app.db.url.clone()).await.unwrap();
    let txn = db.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "UPDATE game_sessions SET world_time = world_time WHERE id = {session_id}"
    ))
    .await
    .unwrap();
    (db, txn)
}

fn bump(id: i64) -> pb::UpdateSessionRequest {
    pb::UpdateSessionRequest {
        session_id: id,
        world_time: Some(7.0),
        ..Default::default()
    }
}

backend_tests! {
    a_request_over_the_time_limit_ends_with_deadline_exceeded_and_commits_nothing => timeout;
    requests_beyond_the_concurrency_limit_are_shed_and_the_admitted_ones_finish => shedding;
}

async fn timeout(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.server.request_timeout_ms = 300).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let (db, lock) = hold_lock(&app, s.id).await;
    let started = Instant::now();
    let err = c.update_session(as_user(1, bump(s.id))).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    lock.rollback().await.unwrap();
    db.close().await.unwrap();
    let now = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.version, 1, "the abandoned write did not commit");
    c.update_session(as_user(1, bump(s.id)))
        .await
        .expect("the server is fine afterwards");
    app.finish().await;
}

async fn shedding(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        common::metrics::metrics_on(s);
        s.server.concurrency_limit = 2;
    })
    .await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let (db, lock) = hold_lock(&app, s.id).await;
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let mut c = c.clone();
        stuck.push(tokio::spawn(async move {
            c.update_session(as_user(1, bump(s.id))).await
        }));
    }
    // Both slots are held by the stuck writes (watched on /metrics, which takes no slot).
    common::eventually(
        "both slots held by the stuck writes",
        Duration::from_secs(5),
        || async {
            let m = common::metrics::scrape(&app).await;
            (common::metrics::value(&m, "session_grpc_requests_in_flight") == Some(2.0)).then_some(())
        },
    )
    .await;
    let started = Instant::now();
    let err = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(error_info(&err).unwrap().reason, "OVERLOADED");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "shed at once, not queued"
    );
    let mut h = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    assert!(
        h.check(tonic_health::pb::HealthCheckRequest {
            service: String::new()
        })
        .await
        .is_ok(),
        "probes pass under load"
    );
    lock.rollback().await.unwrap();
    for t in stuck {
        t.await.unwrap().expect("admitted requests complete");
    }
    let now = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now.world_time, 7.0);
    db.close().await.unwrap();
    app.finish().await;
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_and_the_server_stays_up() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.server.max_message_bytes = 64 * 1024).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let huge = pb::UpdateSessionRequest {
        session_id: s.id,
        flags: Some(obj(json!({ "blob": "x".repeat(100 * 1024) }))),
        ..Default::default()
    };
    let err = c.update_session(as_user(1, huge)).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let info = error_info(&err).expect("transport errors carry ErrorInfo too");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("MESSAGE_TOO_LARGE", "session.pixsim7")
    );
    assert!(
        c.get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
            .await
            .is_ok()
    );
    app.finish().await;
}

#[tokio::test]
async fn each_user_gets_a_token_bucket_when_rate_limiting_is_on() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.rate_limit.per_second = 2.0;
        s.rate_limit.burst = 3;
    })
    .await;
    let mut c = app.client().await;
    let get = |user| as_user(user, pb::GetSessionRequest::strong(1));
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(c.get_session(get(1)).await.unwrap_err().code());
    }
    assert_eq!(&codes[..3], &[Code::NotFound; 3], "the burst passes");
    assert_eq!(codes[3], Code::ResourceExhausted);
    let limited = c.get_session(get(1)).await.unwrap_err();
    assert_eq!(error_info(&limited).unwrap().reason, "RATE_LIMITED");
    assert_eq!(
        c.get_session(get(2)).await.unwrap_err().code(),
        Code::NotFound,
        "other users are unaffected"
    );
    // The bucket refills (2 tokens/s here): user 1 gets through again.
    common::eventually("the bucket refills", Duration::from_secs(3), || {
        let mut c = c.clone();
        async move { (c.get_session(get(1)).await.unwrap_err().code() == Code::NotFound).then_some(()) }
    })
    .await;
    app.finish().await;
}

/// Reads HTTP/2 frames until the server closes the connection; returns the frame types seen.
async fn frames_until_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut types = Vec::new();
    let mut header = [0u8; 9];
    while stream.read_exact(&mut header).await.is_ok() {
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        types.push(header[3]);
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).await.is_err() {
            break;
        }
    }
    types
}

#[tokio::test]
async fn a_peer_that_stops_answering_keepalive_pings_is_disconnected() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.server.http2_keepalive_interval_secs = 1;
        s.server.http2_keepalive_timeout_secs = 1;
    })
    .await;
    let mut raw = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    // The HTTP/2 client preface and an empty SETTINGS frame; then silence: no PING ACKs.
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    raw.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).await.unwrap();
    let started = Instant::now();
    let frames = tokio::time::timeout(Duration::from_secs(10), frames_until_close(&mut raw))
        .await
        .expect("closed");
    const PING: u8 = 0x6;
    assert!(frames.contains(&PING), "the server pinged: {frames:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the interval"
    );
    app.finish().await;
}

#[tokio::test]
async fn an_unknown_method_is_unimplemented_with_error_info() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<pb::GetSessionRequest, pb::GameSession>::default();
    let err = grpc
        .unary(
            as_user(1, pb::GetSessionRequest::strong(1)),
            "/pixsim.session.v1.SessionService/NoSuchMethod".parse().unwrap(),
            codec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(error_info(&err).expect("ErrorInfo").reason, "UNIMPLEMENTED");
    app.finish().await;
}

#[tokio::test]
async fn a_call_dropped_on_the_clients_deadline_is_counted_as_cancelled() {
    let app = TestApp::spawn_with(Backend::Sqlite, metrics::metrics_on).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let (db, lock) = hold_lock(&app, s.id).await;
    let mut req = as_user(1, bump(s.id));
    req.set_timeout(Duration::from_millis(200));
    let err = c.update_session(req).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{err:?}"
    );
    let series = "session_grpc_requests_total{method=\"pixsim.session.v1.SessionService/UpdateSession\",code=\"Cancelled\"}";
    let mut counted = None;
    for _ in 0..50 {
        counted = metrics::value(&metrics::scrape(&app).await, series);
        if counted.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counted, Some(1.0), "the dropped call is in the metrics");
    lock.rollback().await.unwrap();
    db.close().await.unwrap();
    app.finish().await;
}
