//! The Rust client against a real server: conflict resolution, rollback, order,
//! the offline queue, live updates, lost responses, and the hot session.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::{dropper::Dropper, *};
use serde_json::json;
use session_service::{
    client::{
        ClientError, Credentials, OptimisticOptions, OptimisticSession, RetryPolicy, SessionClient, ops,
    },
    domain::Session,
};
use tonic::Code;

async fn client(app: &TestApp, user: i64) -> SessionClient {
    SessionClient::new(app.channel().await).with_credentials(Credentials::UserId(user))
}

async fn fresh(c: &SessionClient, flags: serde_json::Value) -> Session {
    c.create(session_service::client::create_request(1, 10, &flags))
        .await
        .unwrap()
}

fn counter(s: &Session) -> i64 {
    s.flags["counter"].as_i64().unwrap()
}

fn steps(s: &Session, quest: &str) -> i64 {
    s.flags["quests"][quest]["stepsCompleted"].as_i64().unwrap_or(0)
}

backend_tests! {
    a_conflict_is_resolved_by_re_applying_on_the_server_state => conflict_resolved;
    a_server_error_rolls_the_handle_back_to_the_exact_prior_state => rollback;
    rapid_applies_keep_their_order_and_end_equal_to_the_server => rapid_order;
    the_offline_queue_replays_in_order_after_the_server_restarts => offline_queue;
    a_handle_sees_another_handles_writes_without_polling => live_updates;
    five_hundred_increments_through_lost_responses_end_at_exactly_500 => lost_responses;
    sixteen_clients_incrementing_one_quest_through_mutate_session_all_succeed => hot_mutate;
}

async fn conflict_resolved(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let a = client(&app, 1).await;
    let b = client(&app, 1).await;
    let s = fresh(&a, json!({"counter": 0, "seen": []})).await;
    let stale = a.get(s.id).await.unwrap();
    b.update_from(s.clone(), |s| {
        s.flags.insert("counter".into(), json!(10));
    })
    .await
    .unwrap();
    let done = a
        .update_from(stale, |s| {
            let n = counter(s);
            s.flags.insert("counter".into(), json!(n + 1));
        })
        .await
        .unwrap();
    assert_eq!(
        (counter(&done), done.version),
        (11, 3),
        "re-applied on version 2, not on the stale copy"
    );
    assert_eq!(a.stats().conflicts, 1);
    assert_eq!(a.stats().exhaustions, 0);
    app.finish().await;
}

async fn rollback(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.sessions.max_json_bytes = 200).await;
    let c = client(&app, 1).await;
    let s = fresh(&c, json!({"keep": 1})).await;
    let handle = OptimisticSession::from_session(c, s.clone(), OptimisticOptions::default());
    let before = handle.state();
    let mut view = handle.subscribe();
    let result = handle.apply(vec![ops::set_flag("blob", Some(json!("x".repeat(500))))]);
    view.changed().await.unwrap();
    assert_eq!(
        view.borrow_and_update().flags["blob"].as_str().unwrap().len(),
        500,
        "shown at once"
    );
    let err = result.await.unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    assert_eq!(handle.state(), before, "rolled back to the exact prior state");
    assert!(handle.pending().is_empty());
    app.finish().await;
}

async fn rapid_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = client(&app, 1).await;
    let s = fresh(&c, json!({})).await;
    let handle = OptimisticSession::from_session(c.clone(), s.clone(), OptimisticOptions::default());
    let futures: Vec<_> = (1..=20)
        .map(|i| {
            handle.apply(vec![
                ops::increment_quest_steps("q", i),
                ops::set_flag("last", Some(json!(i))),
            ])
        })
        .collect();
    let shown = handle.state();
    assert_eq!(
        (steps(&shown, "q"), shown.flags["last"].clone()),
        (210, json!(20)),
        "server truth + pending, in order"
    );
    for f in futures {
        f.await.unwrap();
    }
    let server = c.get(s.id).await.unwrap();
    assert_eq!(steps(&server, "q"), 210);
    assert_eq!(
        server.flags["last"],
        json!(20),
        "applied in the order they were made"
    );
    assert_eq!(server.version, 21);
    assert_eq!(handle.state(), server);
    app.finish().await;
}

async fn offline_queue(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let c = client(&app, 1).await.with_retry_policy(RetryPolicy {
        max_retries: 1,
        ..Default::default()
    });
    let s = fresh(&c, json!({})).await;
    let options = OptimisticOptions {
        reconnect_interval: Duration::from_millis(100),
        watch: false,
        ..Default::default()
    };
    let handle = OptimisticSession::from_session(c.clone(), s.clone(), options);
    let addr = app.addr;
    app.stop().await;

    let queued: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|q| handle.apply(vec![ops::increment_quest_steps(*q, 1)]))
        .collect();
    // The handle has tried the absent server (a resend ran out) and kept everything.
    common::eventually(
        "the handle tries the absent server",
        Duration::from_secs(5),
        || async { (c.stats().exhaustions >= 1).then_some(()) },
    )
    .await;
    assert_eq!(handle.pending().len(), 3, "kept while the server is away");
    let shown = handle.state();
    assert_eq!(
        (steps(&shown, "a"), steps(&shown, "b"), steps(&shown, "c")),
        (1, 1, 1)
    );

    let mut settings = app.settings.clone();
    settings.server.listen = addr;
    let db = TestDb::same_as(&app.db);
    let restarted = TestApp::start(db, settings).await;
    for q in queued {
        tokio::time::timeout(Duration::from_secs(10), q)
            .await
            .expect("replayed")
            .unwrap();
    }
    let server = c.get(s.id).await.unwrap();
    assert_eq!(server.version, 4);
    assert_eq!(handle.state(), server);
    assert!(handle.pending().is_empty());
    let mut restarted = restarted;
    restarted.stop().await;
    app.db.drop_now().await;
}

async fn live_updates(backend: Backend) {
    let app = TestApp::spawn_with(backend, common::metrics::metrics_on).await;
    let c = client(&app, 1).await;
    let s = fresh(&c, json!({})).await;
    let tab_a = OptimisticSession::from_session(c.clone(), s.clone(), OptimisticOptions::default());
    let tab_b =
        OptimisticSession::from_session(client(&app, 1).await, s.clone(), OptimisticOptions::default());
    // Both handles' watch streams are open on the server.
    common::eventually("both handles watch", Duration::from_secs(5), || async {
        let open = common::metrics::value(&common::metrics::scrape(&app).await, "session_watch_streams_open");
        (open >= Some(2.0)).then_some(())
    })
    .await;
    let mut b_view = tab_b.subscribe();
    tab_a.apply(vec![ops::trigger_event("storm")]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            b_view.changed().await.unwrap();
            if b_view.borrow_and_update().flags.get("events").is_some() {
                break;
            }
        }
    })
    .await
    .expect("tab b sees tab a's write");
    assert_eq!(tab_b.confirmed().version, 2);
    app.finish().await;
}

async fn lost_responses(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (proxy, dropper) = Dropper::start(app.channel().await, 5).await;
    let policy = RetryPolicy {
        base: Duration::from_millis(4),
        ..Default::default()
    };
    let direct = client(&app, 1).await;
    let s = fresh(&direct, json!({"counter": 0})).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{proxy}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // One writer: every retry here is a lost response, not a conflict.
    let c = SessionClient::new(channel)
        .with_credentials(Credentials::UserId(1))
        .with_retry_policy(policy);
    for _ in 0..500 {
        c.update_with_retry(s.id, |s| {
            let n = counter(s);
            s.flags.insert("counter".into(), json!(n + 1));
        })
        .await
        .expect("every increment is acknowledged");
    }
    let end = direct.get(s.id).await.unwrap();
    assert!(
        dropper.dropped.load(Ordering::SeqCst) >= 200,
        "a fifth of ~1000 responses were dropped"
    );
    assert!(c.stats().retries >= 200);
    assert_eq!(counter(&end), 500, "none lost, none applied twice");
    assert_eq!(end.version, 501);
    app.finish().await;
}

async fn hot_mutate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = client(&app, 1).await;
    let s = fresh(&c, json!({})).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let c = client(&app, 1).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                c.mutate(s.id, &[ops::increment_quest_steps("hot", 1)], None)
                    .await?;
            }
            Ok::<_, ClientError>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("no MutateSession call failed");
    }
    let end = c.get(s.id).await.unwrap();
    assert_eq!(steps(&end, "hot"), 800);
    assert_eq!(end.version, 801);
    assert_eq!(c.stats().conflicts, 0);
    app.finish().await;
}
