//! World rules: versioned, admin-only, applied on write, re-normalized in the background.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use session_service::{
    domain::{Tier, WorldRules},
    pb::{self, session_service_client::SessionServiceClient},
    store::Store,
    wire::status::rpc_status,
};
use tonic::{Code, transport::Channel};

type Client = SessionServiceClient<Channel>;

fn rules(tiers: &[(&str, f64)], mode: &str) -> pb::WorldRules {
    pb::WorldRules {
        tiers: tiers
            .iter()
            .map(|(id, min)| pb::RelationshipTier {
                id: (*id).into(),
                min: *min,
                max: None,
            })
            .collect(),
        mode: mode.into(),
        ..Default::default()
    }
}

async fn put(
    c: &mut Client,
    world: i64,
    r: pb::WorldRules,
    expected: Option<i64>,
) -> Result<pb::WorldRules, tonic::Status> {
    let req = pb::PutWorldRulesRequest {
        world_id: world,
        rules: Some(r),
        expected_version: expected,
    };
    c.put_world_rules(as_admin(1, req)).await.map(|r| r.into_inner())
}

async fn create_in(c: &mut Client, world: i64, affinity: f64, kind: &str) -> pb::GameSession {
    let req = pb::CreateSessionRequest {
        scene_id: 1,
        entry_node_id: 1,
        world_id: Some(world),
        flags: Some(obj(json!({"sessionKind": kind}))),
        relationships: Some(obj(json!({"npc:1": {"affinity": affinity}}))),
        ..Default::default()
    };
    c.create_session(as_user(1, req)).await.unwrap().into_inner()
}

async fn tier(c: &mut Client, id: i64) -> (String, i64) {
    let s = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(id)))
        .await
        .unwrap()
        .into_inner();
    (
        json(&s.relationships)["npc:1"]["tierId"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        s.version,
    )
}

backend_tests! {
    world_rules_are_the_defaults_until_put_and_then_versioned => versioned_rules;
    sessions_of_a_world_are_normalized_with_its_rules => applied_on_write;
    changing_rules_renormalizes_every_session_of_the_world => renormalized;
    a_restart_resumes_renormalization => resumed;
    turn_based_worlds_accept_only_whole_turns => turn_based;
}

async fn versioned_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let defaults = c
        .get_world_rules(as_user(1, pb::GetWorldRulesRequest { world_id: 9 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(defaults.version, 0);
    assert_eq!(defaults.tiers.len(), 5);
    assert_eq!(defaults.mode, "free");
    assert_eq!(defaults.turn_delta_seconds, Some(3600.0));

    let v1 = put(
        &mut c,
        9,
        rules(&[("cold", 0.0), ("warm", 50.0)], "free"),
        Some(0),
    )
    .await
    .unwrap();
    assert_eq!((v1.version, v1.world_id), (1, 9));
    let again = put(&mut c, 9, rules(&[("x", 0.0)], "free"), Some(0))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::Aborted);
    let current = rpc_status(&again).unwrap().details[1]
        .to_msg::<pb::WorldRules>()
        .unwrap();
    assert_eq!(current, v1, "the current rules ride in the details");
    let v2 = put(&mut c, 9, rules(&[("x", 0.0)], "free"), Some(1))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);

    let overlap = put(&mut c, 9, rules(&[("a", 0.0), ("b", 0.0)], "free"), None)
        .await
        .unwrap_err();
    assert_eq!(overlap.code(), Code::InvalidArgument);
    let bad_mode = put(&mut c, 9, rules(&[("a", 0.0)], "hourly"), None)
        .await
        .unwrap_err();
    assert_eq!(bad_mode.code(), Code::InvalidArgument);
    let req = pb::PutWorldRulesRequest {
        world_id: 9,
        rules: Some(rules(&[("a", 0.0)], "free")),
        expected_version: None,
    };
    let denied = c.put_world_rules(as_user(2, req)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    app.finish().await;
}

async fn applied_on_write(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    put(&mut c, 5, rules(&[("cold", 0.0), ("warm", 50.0)], "free"), None)
        .await
        .unwrap();
    let s = create_in(&mut c, 5, 60.0, "scene").await;
    assert_eq!(json(&s.relationships)["npc:1"]["tierId"], "warm");
    let other = create_in(&mut c, 6, 60.0, "scene").await;
    assert_eq!(
        json(&other.relationships)["npc:1"]["tierId"],
        "close_friend",
        "other worlds keep the defaults"
    );
    app.finish().await;
}

async fn renormalized(backend: Backend) {
    let app = TestApp::spawn_with(backend, metrics::metrics_on).await;
    let mut c = app.client().await;
    let mut ids = Vec::new();
    for affinity in [5.0, 35.0, 65.0, 95.0] {
        ids.push(create_in(&mut c, 7, affinity, "scene").await.id);
    }
    assert_eq!(tier(&mut c, ids[3]).await.0, "lover");
    put(&mut c, 7, rules(&[("low", 0.0), ("high", 50.0)], "free"), None)
        .await
        .unwrap();
    let want = ["low", "low", "high", "high"];
    for _ in 0..50 {
        let mut done = true;
        for (id, w) in ids.iter().zip(want) {
            done &= tier(&mut c, *id).await.0 == w;
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (id, w) in ids.iter().zip(want) {
        let (t, version) = tier(&mut c, *id).await;
        assert_eq!((t.as_str(), version), (w, 2), "session {id}");
        let events = c
            .list_session_events(as_user(
                1,
                pb::ListSessionEventsRequest {
                    session_id: *id,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .events;
        assert_eq!(events.last().unwrap().action, "renormalize");
    }
    // Progress: the sweep counted the four down to zero.
    let m = metrics::scrape(&app).await;
    assert_eq!(
        metrics::value(&m, "session_renormalized_sessions_total"),
        Some(4.0)
    );
    assert_eq!(
        metrics::value(&m, "session_renormalize_pending_sessions"),
        Some(0.0)
    );
    app.finish().await;
}

async fn resumed(backend: Backend) {
    let mut app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create_in(&mut c, 8, 40.0, "scene").await;
    app.stop().await;
    // Rules changed while no server ran (as if it crashed before re-normalizing).
    let store = Store::connect(&common::store_settings(&app.db.url))
        .await
        .unwrap();
    let mut r = WorldRules::defaults(8);
    r.tiers = vec![Tier {
        id: "only".into(),
        min: 0.0,
        max: None,
    }];
    store
        .put_world_rules(&r.validated().unwrap(), None)
        .await
        .unwrap();
    store.close().await;

    let settings = app.settings.clone();
    let db = std::mem::replace(&mut app.db, TestDb::create(Backend::Sqlite).await);
    let app = TestApp::start(db, settings).await;
    let mut c = app.client().await;
    let mut got = String::new();
    for _ in 0..50 {
        got = tier(&mut c, s.id).await.0;
        if got == "only" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, "only", "the sweep at start re-normalized it");
    app.finish().await;
}

async fn turn_based(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let mut r = rules(&[("t", 0.0)], "turn_based");
    r.turn_delta_seconds = Some(600.0);
    put(&mut c, 4, r, None).await.unwrap();
    let world = create_in(&mut c, 4, 0.0, "world").await;
    let scene = create_in(&mut c, 4, 0.0, "scene").await;
    let at = |id: i64, t: f64| pb::UpdateSessionRequest {
        session_id: id,
        world_time: Some(t),
        ..Default::default()
    };
    let err = c
        .update_session(as_user(1, at(world.id, 300.0)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        c.update_session(as_user(1, at(world.id, 600.0005)))
            .await
            .unwrap()
            .into_inner()
            .version,
        2
    );
    assert_eq!(
        c.update_session(as_user(1, at(world.id, 600.0005)))
            .await
            .unwrap()
            .into_inner()
            .version,
        2,
        "a move of 0 is allowed"
    );
    assert!(
        c.update_session(as_user(1, at(scene.id, 300.0))).await.is_ok(),
        "only world sessions are turn-bound"
    );
    app.finish().await;
}
