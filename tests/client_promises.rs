//! The Rust client's promises to a game UI (issue: local tiers, honest offline
//! behaviour, merge hooks, metrics, no silent drops, the rest of the API), against a
//! real server on SQLite and PostgreSQL.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{dropper::Dropper, *};
use futures::StreamExt;
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
    data::{AggregatedMetrics, MetricData},
};
use serde_json::json;
use session_service::{
    client::{
        AdvanceOutcome, AtDeadline, ClientError, Conflict, Credentials, FileQueue, Merge, NpcPatch,
        OptimisticOptions, OptimisticSession, QueueStore, QueuedMutation, SessionClient, SyncStatus,
        UpdateOutcome, create_request, ops,
    },
    domain::Session,
    pb,
};
use tonic::Code;

backend_tests! {
    an_edit_shows_its_tier_before_the_server_answers_with_default_rules => tiers_default;
    an_edit_shows_its_tier_before_the_server_answers_with_a_worlds_own_rules => tiers_world;
    with_the_server_gone_the_handle_says_offline_and_futures_resolve_at_their_deadline => offline_deadline;
    a_mutation_dropped_at_its_deadline_is_rolled_back_and_never_sent => deadline_drop;
    queued_edits_survive_a_restart_of_the_host_and_replay_exactly_once => file_queue;
    a_merge_hook_sees_intent_current_and_diff_and_can_replace_the_edit => merge_replace;
    a_merge_hook_can_drop_the_edit => merge_drop;
    client_metrics_go_through_the_opentelemetry_api => metrics;
    an_update_closure_that_changes_what_update_cannot_carry_is_an_error => unsendable;
    advance_delete_and_world_rules_are_retried_and_idempotent => wrappers;
    listings_are_streams_that_page_on_their_own => listings;
}

async fn client(app: &TestApp, user: i64) -> SessionClient {
    SessionClient::new(app.channel().await).with_credentials(Credentials::UserId(user))
}

fn admin(c: SessionClient) -> SessionClient {
    c.with_metadata("x-scopes", "sessions:admin")
}

async fn fresh(c: &SessionClient, flags: serde_json::Value, world_id: Option<i64>) -> Session {
    let mut req = create_request(1, 10, &flags);
    req.world_id = world_id;
    c.create(req).await.unwrap()
}

fn quiet() -> OptimisticOptions {
    OptimisticOptions {
        watch: false,
        reconnect_interval: Duration::from_millis(100),
        ..Default::default()
    }
}

fn affinity(npc: i64, value: f64) -> Vec<session_service::domain::SessionOp> {
    let patch = NpcPatch {
        affinity: Some(value),
        ..Default::default()
    };
    vec![ops::update_npc_relationship(npc, patch)]
}

fn tier(s: &Session, npc: i64) -> serde_json::Value {
    s.relationships[&format!("npc:{npc}")]["tierId"].clone()
}

fn steps(s: &Session, quest: &str) -> i64 {
    let quest = s.flags.get("quests").and_then(|q| q.get(quest));
    quest.and_then(|q| q["stepsCompleted"].as_i64()).unwrap_or(0)
}

async fn tiers_default(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = client(&app, 1).await;
    let s = fresh(&c, json!({}), None).await;
    let handle = OptimisticSession::from_session(c.clone(), s, quiet());
    let answer = handle.apply(affinity(1, 65.0));
    // Shown with its tier before the server has even been asked.
    assert_eq!(tier(&handle.state(), 1), json!("close_friend"));
    let server = answer.await.unwrap();
    assert_eq!(tier(&server, 1), json!("close_friend"), "and the server agrees");
    app.finish().await;
}

async fn tiers_world(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = client(&app, 1).await;
    let rules = pb::WorldRules {
        tiers: vec![
            pb::RelationshipTier {
                id: "cold".into(),
                min: 0.0,
                max: None,
            },
            pb::RelationshipTier {
                id: "warm".into(),
                min: 50.0,
                max: None,
            },
        ],
        ..Default::default()
    };
    admin(c.clone()).put_world_rules(5, rules, Some(0)).await.unwrap();
    let s = fresh(&c, json!({}), Some(5)).await;
    let handle = OptimisticSession::open(c.clone(), s.id, quiet()).await.unwrap();
    assert_eq!(handle.rules().version, 1, "the world's own rules, read at open");
    let answer = handle.apply(affinity(2, 60.0));
    assert_eq!(tier(&handle.state(), 2), json!("warm"));
    assert_eq!(tier(&answer.await.unwrap(), 2), json!("warm"));
    app.finish().await;
}

async fn offline_deadline(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let c = client(&app, 1).await;
    let s = fresh(&c, json!({}), None).await;
    let options = OptimisticOptions {
        deadline: Some(Duration::from_millis(800)),
        ..quiet()
    };
    let handle = OptimisticSession::from_session(c.clone(), s.clone(), options);
    assert_eq!(handle.status(), SyncStatus::Online);
    let addr = app.addr;
    app.stop().await;

    let started = std::time::Instant::now();
    let answer = handle.apply(vec![ops::increment_quest_steps("q", 1)]).await;
    assert!(
        matches!(answer, Err(ClientError::Deadline { kept: true })),
        "{answer:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "resolved at the deadline"
    );
    eventually("the handle says offline", Duration::from_secs(5), || async {
        matches!(handle.status(), SyncStatus::Offline { pending: 1, .. }).then_some(())
    })
    .await;
    assert_eq!(steps(&handle.state(), "q"), 1, "still shown while queued");

    let mut settings = app.settings.clone();
    settings.server.listen = addr;
    let restarted = TestApp::start(TestDb::same_as(&app.db), settings).await;
    let mut status = handle.subscribe_status();
    tokio::time::timeout(
        Duration::from_secs(10),
        status.wait_for(|s| *s == SyncStatus::Online),
    )
    .await
    .expect("back online")
    .unwrap();
    assert_eq!(
        steps(&c.get(s.id).await.unwrap(), "q"),
        1,
        "the kept mutation was sent once"
    );
    restarted.finish().await;
    app.db.drop_now().await;
}

async fn deadline_drop(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let c = client(&app, 1).await;
    let s = fresh(&c, json!({}), None).await;
    let options = OptimisticOptions {
        deadline: Some(Duration::from_millis(300)),
        at_deadline: AtDeadline::Drop,
        max_pending: 2,
        ..quiet()
    };
    let handle = OptimisticSession::from_session(c.clone(), s.clone(), options);
    let addr = app.addr;
    app.stop().await;
    let first = handle.apply(vec![ops::increment_quest_steps("q", 1)]);
    let second = handle.apply(vec![ops::increment_quest_steps("q", 1)]);
    let third = handle.apply(vec![ops::increment_quest_steps("q", 1)]).await;
    assert!(
        matches!(third, Err(ClientError::QueueFull)),
        "a bounded queue: {third:?}"
    );
    assert!(matches!(first.await, Err(ClientError::Deadline { kept: false })));
    assert!(matches!(second.await, Err(ClientError::Deadline { kept: false })));
    assert_eq!(steps(&handle.state(), "q"), 0, "rolled back");
    assert!(handle.pending().is_empty());

    let mut settings = app.settings.clone();
    settings.server.listen = addr;
    let restarted = TestApp::start(TestDb::same_as(&app.db), settings).await;
    // Neither was sent once dropped: the server never applies them.
    let probe = handle.apply(vec![ops::set_flag("probe", Some(json!(true)))]);
    let after = tokio::time::timeout(Duration::from_secs(10), probe)
        .await
        .expect("online again");
    assert_eq!(steps(&after.unwrap(), "q"), 0);
    restarted.finish().await;
    app.db.drop_now().await;
}

async fn file_queue(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let c = client(&app, 1).await;
    let s = fresh(&c, json!({}), None).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.json");

    // One edit the server applied, whose answer the host never saw before it died:
    // it is in the file with its request id.
    let applied_once = "kept-request-id-1".to_string();
    let bump = |s: &mut Session| {
        let n = steps(s, "q");
        s.flags.insert(
            "quests".into(),
            json!({"q": {"status": "in_progress", "stepsCompleted": n + 1}}),
        );
    };
    c.update_idempotent(s.clone(), applied_once.clone(), bump)
        .await
        .unwrap();
    FileQueue::new(&path)
        .save(&[QueuedMutation {
            session_id: s.id,
            request_id: applied_once,
            ops: vec![ops::increment_quest_steps("q", 1)],
        }])
        .unwrap();

    // The server goes away; the host keeps editing, then exits.
    let addr = app.addr;
    app.stop().await;
    {
        let handle = OptimisticSession::builder(c.clone())
            .options(quiet())
            .queue_store(FileQueue::new(&path))
            .start(s.clone())
            .unwrap();
        for _ in 0..3 {
            // Queued in the call; nobody waits for the answer (the host is about to exit).
            let _unawaited = handle.apply(vec![ops::increment_quest_steps("q", 1)]);
        }
        eventually("offline", Duration::from_secs(5), || async {
            matches!(handle.status(), SyncStatus::Offline { pending: 4, .. }).then_some(())
        })
        .await;
    }
    assert_eq!(
        FileQueue::new(&path).load().unwrap().len(),
        4,
        "the queue outlived its handle"
    );

    // The server and the host come back: everything queued is replayed, once.
    let mut settings = app.settings.clone();
    settings.server.listen = addr;
    let restarted = TestApp::start(TestDb::same_as(&app.db), settings).await;
    let handle = OptimisticSession::builder(c.clone())
        .options(quiet())
        .queue_store(FileQueue::new(&path))
        .start(s.clone())
        .unwrap();
    eventually("the replay is done", Duration::from_secs(10), || async {
        (handle.status() == SyncStatus::Online).then_some(())
    })
    .await;
    let server = c.get(s.id).await.unwrap();
    assert_eq!(
        steps(&server, "q"),
        4,
        "1 applied before + 3 replayed; the recorded one not again"
    );
    assert!(FileQueue::new(&path).load().unwrap().is_empty());
    restarted.finish().await;
    app.db.drop_now().await;
}

/// A handle that does not watch, so another writer's change reaches it only as a conflict.
async fn stale_handle_with_hook(
    app: &TestApp,
    hook: impl Fn(&Conflict) -> Merge + Send + Sync + 'static,
) -> (SessionClient, Session, OptimisticSession) {
    let c = client(app, 1).await;
    let s = fresh(&c, json!({}), None).await;
    let s = c
        .apply_ops(s, &[ops::add_inventory_item("potion", 1)])
        .await
        .unwrap();
    let handle = OptimisticSession::builder(c.clone())
        .options(quiet())
        .merge(hook)
        .start(s.clone())
        .unwrap();
    // Another tab trades the potion for an antidote.
    let trade = [
        ops::remove_inventory_item("potion", 1),
        ops::add_inventory_item("antidote", 1),
    ];
    c.apply_ops(s.clone(), &trade).await.unwrap();
    (c, s, handle)
}

async fn merge_replace(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let seen: Arc<Mutex<Vec<Conflict>>> = Arc::default();
    let record = seen.clone();
    let (c, s, handle) = stale_handle_with_hook(&app, move |conflict| {
        record.lock().unwrap().push(conflict.clone());
        Merge::Replace(vec![ops::add_inventory_item("elixir", 1)])
    })
    .await;
    let got = handle
        .apply(vec![ops::remove_inventory_item("potion", 1)])
        .await
        .unwrap();
    let conflicts = seen.lock().unwrap().clone();
    assert_eq!(conflicts.len(), 1);
    let conflict = &conflicts[0];
    assert_eq!(conflict.intent, vec![ops::remove_inventory_item("potion", 1)]);
    assert_eq!(
        conflict.current.version,
        s.version + 1,
        "the server's session, after the other tab"
    );
    assert!(
        conflict.diff.contains_key("flags"),
        "the difference is in flags: {:?}",
        conflict.diff
    );
    let items = &got.flags["inventory"]["items"];
    let expected = json!([{"id": "antidote", "qty": 1}, {"id": "elixir", "qty": 1}]);
    assert_eq!(
        items, &expected,
        "the replacement was applied on the current session"
    );
    assert_eq!(c.get(s.id).await.unwrap(), got);
    app.finish().await;
}

async fn merge_drop(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (c, s, handle) = stale_handle_with_hook(&app, |_| Merge::Drop).await;
    let before = c.stats().rollbacks;
    let refused = handle.apply(vec![ops::remove_inventory_item("potion", 1)]).await;
    assert!(matches!(refused, Err(ClientError::Mutation(_))), "{refused:?}");
    assert_eq!(
        handle.state(),
        c.get(s.id).await.unwrap(),
        "rolled back to the server's state"
    );
    assert_eq!(c.stats().rollbacks, before + 1);
    app.finish().await;
}

/// The sum of a u64 counter (or i64 up-down counter) across its points, and the
/// count of a histogram, by name.
fn recorded(exporter: &InMemoryMetricExporter, name: &str) -> Option<f64> {
    let metrics = exporter.get_finished_metrics().unwrap();
    let metric = metrics
        .iter()
        .flat_map(|r| r.scope_metrics())
        .flat_map(|s| s.metrics())
        .filter(|m| m.name() == name)
        .last()?;
    Some(match metric.data() {
        AggregatedMetrics::U64(MetricData::Sum(sum)) => sum.data_points().map(|p| p.value() as f64).sum(),
        AggregatedMetrics::I64(MetricData::Sum(sum)) => sum.data_points().map(|p| p.value() as f64).sum(),
        AggregatedMetrics::F64(MetricData::Histogram(h)) => h.data_points().map(|p| p.count() as f64).sum(),
        _ => return None,
    })
}

async fn metrics(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let meter = provider.meter(session_service::client::METER_NAME);
    let c = client(&app, 1).await.with_meter(&meter);
    let s = fresh(&c, json!({"n": 0}), None).await;
    // A conflict: the second update starts from the version the first replaced.
    let bump = |s: &mut Session| {
        s.flags
            .insert("n".into(), json!(s.flags["n"].as_i64().unwrap() + 1));
    };
    c.update_from(s.clone(), bump).await.unwrap();
    c.update_from(s.clone(), bump).await.unwrap();
    // A queued mutation, through a handle.
    let current = c.get(s.id).await.unwrap();
    let handle = OptimisticSession::from_session(c.clone(), current, quiet());
    handle
        .apply(vec![ops::increment_quest_steps("q", 1)])
        .await
        .unwrap();
    provider.force_flush().unwrap();

    assert!(recorded(&exporter, "session.client.conflicts") >= Some(1.0));
    assert!(recorded(&exporter, "session.client.retries") >= Some(1.0));
    assert!(
        recorded(&exporter, "session.client.call.duration") >= Some(4.0),
        "every RPC timed"
    );
    assert_eq!(
        recorded(&exporter, "session.client.queue_depth"),
        Some(0.0),
        "back to empty"
    );
    let stats = c.stats();
    assert!(stats.conflicts >= 1 && stats.retries >= 1, "{stats:?}");
    app.finish().await;
}

async fn unsendable(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = client(&app, 1).await;
    let s = fresh(&c, json!({}), None).await;
    let moved = c.update_with_retry(s.id, |s| s.current_node_id = 99).await;
    assert!(
        matches!(
            moved,
            Err(ClientError::Unsendable {
                field: "current_node_id",
                ..
            })
        ),
        "{moved:?}"
    );
    let versioned = c.update_with_retry(s.id, |s| s.version += 5).await;
    assert!(matches!(
        versioned,
        Err(ClientError::Unsendable { field: "version", .. })
    ));
    assert_eq!(c.get(s.id).await.unwrap(), s, "nothing was sent");
    app.finish().await;
}

async fn wrappers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Every second answer is lost after the server committed.
    let (addr, _dropper) = Dropper::start(app.channel().await, 2).await;
    let lossy = SessionClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .with_credentials(Credentials::UserId(1));
    let c = client(&app, 1).await;
    let s = fresh(&c, json!({"gold": 1}), None).await;

    // A plain update: a conflict is an outcome.
    let req = |gold: i64| pb::UpdateSessionRequest {
        session_id: s.id,
        flags: Some(obj(json!({ "gold": gold }))),
        expected_version: Some(s.version),
        ..Default::default()
    };
    let first = lossy.update(req(2)).await.unwrap();
    assert!(
        matches!(&first, UpdateOutcome::Updated(u) if u.version == s.version + 1),
        "{first:?}"
    );
    let second = lossy.update(req(3)).await.unwrap();
    let UpdateOutcome::Conflict { current } = second else {
        panic!("{second:?}")
    };
    assert_eq!(current.version, s.version + 1);

    // Advance: retried at the new version when only the flags moved; the outcome
    // when another device moved the session on.
    let advanced = lossy.advance(&s, 1, 11).await.unwrap();
    let AdvanceOutcome::Advanced(at_11) = advanced else {
        panic!("{advanced:?}")
    };
    assert_eq!((at_11.current_node_id, at_11.version), (11, s.version + 2));
    let again = lossy.advance(&s, 1, 11).await.unwrap();
    assert!(matches!(again, AdvanceOutcome::Moved { ref current } if current.current_node_id == 11));

    // World rules: a lost answer is not a conflict.
    let rules = pb::WorldRules {
        tiers: vec![pb::RelationshipTier {
            id: "any".into(),
            min: 0.0,
            max: None,
        }],
        mode: "turn_based".into(),
        turn_delta_seconds: Some(600.0),
        ..Default::default()
    };
    let lossy_admin = admin(lossy.clone());
    for expected in [0, 1, 2] {
        let saved = lossy_admin
            .put_world_rules(8, rules.clone(), Some(expected))
            .await
            .unwrap();
        assert_eq!(saved.version, expected + 1);
    }

    // Delete: resent after a lost answer, answered from the record.
    lossy.delete(s.id, None).await.unwrap();
    let gone = c.get(s.id).await.unwrap_err();
    assert_eq!(gone.code(), Some(Code::NotFound));
    app.finish().await;
}

async fn listings(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let c = client(&app, 1).await;
    let mut created = Vec::new();
    for _ in 0..230 {
        created.push(fresh(&c, json!({}), None).await.id);
    }
    let listed: Vec<i64> = c.list_sessions(None).map(|s| s.unwrap().id).collect().await;
    created.reverse();
    assert_eq!(listed, created, "every session, newest first, over two pages");

    let s = c.get(created[0]).await.unwrap();
    let mut s2 = s.clone();
    for _ in 0..3 {
        s2 = c
            .apply_ops(s2, &[ops::increment_quest_steps("q", 1)])
            .await
            .unwrap();
    }
    let versions: Vec<i64> = c.list_events(s.id).map(|e| e.unwrap().version).collect().await;
    assert_eq!(versions, vec![1, 2, 3, 4]);
    app.finish().await;
}
