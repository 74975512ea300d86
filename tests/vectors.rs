//! Shared test vectors for the session helpers: a session and ops → the result or the
//! error, computed by `domain::ops` (the code the server runs). The TypeScript client's
//! suite asserts every vector against its own implementation, so the two cannot drift.
//!
//! `clients/typescript/test/vectors.json` is committed; this test fails if it differs
//! from what the Rust code computes now. `UPDATE_VECTORS=1 cargo test --test vectors`
//! rewrites it.

use serde_json::{Value, json};
use session_service::domain::{
    DomainError, NewSession, Session,
    ops::{self, NpcPatch, SessionOp, apply_all},
};

fn session(flags: Value, relationships: Value, world_time: f64) -> Session {
    let t = chrono::DateTime::from_timestamp(0, 0).unwrap();
    Session {
        id: 1,
        flags: flags.as_object().unwrap().clone(),
        relationships: relationships.as_object().unwrap().clone(),
        world_time,
        ..NewSession::parse(1, 1, None, None).unwrap().to_session(1, t)
    }
}

/// The sessions every op runs on: empty, lived-in, and wrongly shaped.
fn sessions() -> Vec<(&'static str, Session)> {
    vec![
        ("empty", session(json!({}), json!({}), 0.0)),
        (
            "lived-in",
            session(
                json!({
                    "inventory": {"items": [{"id": "potion", "qty": 2}, {"id": "key", "qty": 1}]},
                    "quests": {"q1": {"status": "in_progress", "stepsCompleted": 3}},
                    "arcs": {"main": {"stage": 2, "seenScenes": [10, 11]}},
                    "events": {"storm": {"active": true, "triggeredAt": 5}},
                    "a": {"b": 1}
                }),
                json!({"npc:1": {"affinity": 40, "flags": ["met"]}}),
                120.5,
            ),
        ),
        (
            "misshapen",
            session(
                json!({
                    "inventory": {"items": "none"},
                    "quests": {"q1": {"stepsCompleted": 2.5}},
                    "arcs": {"main": 7},
                    "events": [],
                    "a": 3
                }),
                json!({"npc:1": "friend"}),
                0.0,
            ),
        ),
    ]
}

fn npc(affinity: Option<f64>, trust: Option<f64>, flags: Option<Value>) -> NpcPatch {
    NpcPatch {
        affinity,
        trust,
        flags: flags.map(|f| f.as_array().unwrap().clone()),
        ..Default::default()
    }
}

/// Each helper with good, edge and bad arguments, alone and in sequences.
fn op_lists() -> Vec<Vec<SessionOp>> {
    let one = |op: SessionOp| vec![op];
    vec![
        one(ops::update_npc_relationship(1, npc(Some(65.0), None, None))),
        one(ops::update_npc_relationship(
            2,
            npc(Some(10.5), Some(80.0), Some(json!(["flirted"]))),
        )),
        one(ops::add_inventory_item("potion", 3)),
        one(ops::add_inventory_item("sword", 1)),
        one(ops::add_inventory_item("", 1)),
        one(ops::add_inventory_item("potion", 0)),
        one(ops::add_inventory_item("potion", 9_007_199_254_740_992)),
        one(ops::remove_inventory_item("potion", 1)),
        one(ops::remove_inventory_item("potion", 2)),
        one(ops::remove_inventory_item("potion", 5)),
        one(ops::remove_inventory_item("ghost", 1)),
        one(ops::update_arc_stage("main", 3)),
        one(ops::update_arc_stage("side", 1)),
        one(ops::update_arc_stage(" ", 1)),
        one(ops::mark_scene_seen("main", 11)),
        one(ops::mark_scene_seen("main", 12)),
        one(ops::mark_scene_seen("new", 1)),
        one(ops::update_quest_status("q1", "done")),
        one(ops::update_quest_status("q2", "started")),
        one(ops::update_quest_status("q1", "")),
        one(ops::increment_quest_steps("q1", 2)),
        one(ops::increment_quest_steps("q9", 1)),
        one(ops::increment_quest_steps("q1", 0)),
        one(ops::trigger_event("festival")),
        one(ops::end_event("storm")),
        one(ops::end_event("never")),
        one(ops::set_world_time(3600.0)),
        one(ops::set_world_time(-1.0)),
        one(ops::set_flag("a.b", Some(json!({"deep": [1, 2]})))),
        one(ops::set_flag("x.y.z", Some(json!("v")))),
        one(ops::set_flag("a.b", None)),
        one(ops::set_flag("missing.key", None)),
        one(ops::set_flag("a..b", Some(json!(1)))),
        vec![
            ops::add_inventory_item("potion", 1),
            ops::remove_inventory_item("potion", 1),
            ops::increment_quest_steps("q1", 1),
            ops::trigger_event("dawn"),
        ],
        vec![
            ops::add_inventory_item("gem", 1),
            ops::remove_inventory_item("gem", 2),
        ],
        vec![ops::set_world_time(60.0), ops::trigger_event("noon")],
    ]
}

fn expectation(result: Result<Session, DomainError>) -> Value {
    match result {
        Ok(s) => {
            json!({"ok": {"flags": s.flags, "relationships": s.relationships, "worldTime": s.world_time}})
        }
        Err(DomainError::Invalid(v)) => json!({"error": {"code": "INVALID_ARGUMENT", "field": v.field}}),
        Err(DomainError::Precondition { reason, .. }) => {
            json!({"error": {"code": "FAILED_PRECONDITION", "reason": reason}})
        }
    }
}

fn vectors() -> Value {
    let mut out = Vec::new();
    for (name, s) in sessions() {
        for ops in op_lists() {
            out.push(json!({
                "session": name,
                "start": {"flags": s.flags, "relationships": s.relationships, "worldTime": s.world_time},
                "ops": ops,
                "expect": expectation(apply_all(&s, &ops)),
            }));
        }
    }
    Value::Array(out)
}

#[test]
fn the_shared_vectors_are_what_the_server_code_computes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/typescript/test/vectors.json");
    let computed = serde_json::to_string_pretty(&vectors()).unwrap() + "\n";
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(&path, &computed).unwrap();
    }
    let committed = std::fs::read_to_string(&path).expect("clients/typescript/test/vectors.json");
    let count = vectors().as_array().unwrap().len();
    assert!(count > 100, "{count} vectors");
    assert!(
        committed == computed,
        "the committed vectors differ from domain::ops: rerun with UPDATE_VECTORS=1 and review the diff"
    );
    // Every committed vector, read back, is what the domain code does now.
    let read: Vec<Value> = serde_json::from_str(&committed).unwrap();
    for v in read {
        let start = &v["start"];
        let s = session(
            start["flags"].clone(),
            start["relationships"].clone(),
            start["worldTime"].as_f64().unwrap(),
        );
        let ops: Vec<SessionOp> = serde_json::from_value(v["ops"].clone()).unwrap();
        assert_eq!(expectation(apply_all(&s, &ops)), v["expect"], "{v}");
    }
}
