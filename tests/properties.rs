//! Properties of the pure rules: normalization is idempotent, the helpers never
//! panic, a client and the server apply the same ops alike, JSON survives the wire.

use proptest::prelude::*;
use serde_json::{Value, json};
use session_service::{
    domain::{
        DomainError, JsonMap, NewSession, Session, Tier, WorldRules, normalize_relationships,
        ops::{self, NpcPatch, SessionOp, apply_all},
    },
    pb,
    wire::{json_to_struct, struct_to_json},
};

fn base(flags: JsonMap) -> Session {
    let t = chrono::DateTime::from_timestamp(0, 0).unwrap();
    let new = NewSession::parse(1, 1, None, Some(10.0)).unwrap();
    Session {
        id: 1,
        flags,
        ..new.to_session(1, t)
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-1_000_000i64..1_000_000).prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z]{0,6}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                "[a-z]{1,6}|inventory|items|arcs|quests|events|qty|id",
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = JsonMap> {
    prop::collection::btree_map(
        "[a-z]{1,6}|inventory|arcs|quests|events|sessionKind",
        json_value(),
        0..5,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn npc_entry() -> impl Strategy<Value = Value> {
    let stat = prop_oneof![Just(None), (-50f64..150.0).prop_map(Some)];
    (stat.clone(), stat.clone(), stat.clone(), stat).prop_map(|(a, t, c, x)| {
        let mut m = JsonMap::new();
        for (k, v) in [("affinity", a), ("trust", t), ("chemistry", c), ("tension", x)] {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
        Value::Object(m)
    })
}

fn relationships() -> impl Strategy<Value = JsonMap> {
    prop::collection::btree_map(
        prop_oneof![
            "npc:[0-9]{1,3}",
            "npcPair:[0-9]:[0-9]",
            Just("network".to_string())
        ],
        npc_entry(),
        0..6,
    )
    .prop_map(|m| m.into_iter().collect())
}

fn rules() -> impl Strategy<Value = WorldRules> {
    prop::collection::btree_set(0u8..100, 0..6).prop_map(|mins| {
        let mut r = WorldRules::defaults(1);
        r.tiers = mins
            .into_iter()
            .enumerate()
            .map(|(i, min)| Tier {
                id: format!("t{i}"),
                min: min as f64,
                max: None,
            })
            .collect();
        r.validated().expect("distinct mins never overlap")
    })
}

fn op() -> impl Strategy<Value = SessionOp> {
    let id = "[a-c]{0,2}";
    prop_oneof![
        (0i64..5, prop::option::of(-10f64..110.0)).prop_map(|(n, a)| ops::update_npc_relationship(
            n,
            NpcPatch {
                affinity: a,
                ..Default::default()
            }
        )),
        (id, -2i64..5).prop_map(|(i, q)| ops::add_inventory_item(i, q)),
        (id, -2i64..5).prop_map(|(i, q)| ops::remove_inventory_item(i, q)),
        (id, 0i64..4).prop_map(|(a, s)| ops::update_arc_stage(a, s)),
        (id, 0i64..4).prop_map(|(a, s)| ops::mark_scene_seen(a, s)),
        (id, "[a-z]{0,4}").prop_map(|(q, s)| ops::update_quest_status(q, s)),
        (id, -1i64..4).prop_map(|(q, n)| ops::increment_quest_steps(q, n)),
        id.prop_map(ops::trigger_event),
        id.prop_map(ops::end_event),
        (-5f64..5.0).prop_map(ops::set_world_time),
        ("[a-c]{0,2}(\\.[a-c]{0,2}){0,2}", prop::option::of(json_leaf()))
            .prop_map(|(p, v)| ops::set_flag(p, v)),
    ]
}

proptest! {
    #[test]
    fn normalization_is_idempotent(mut rel in relationships(), rules in rules()) {
        normalize_relationships(&mut rel, &rules).unwrap();
        let once = rel.clone();
        normalize_relationships(&mut rel, &rules).unwrap();
        prop_assert_eq!(rel, once);
    }

    #[test]
    fn the_client_and_the_server_apply_the_same_ops_alike(
        flags in json_object(),
        ops in prop::collection::vec(op(), 1..8),
    ) {
        // What a client computes locally (its optimistic state) ...
        let session = base(flags);
        let local = apply_all(&session, &ops);
        // ... equals what the server computes from the ops it receives on the wire.
        let received: Vec<SessionOp> = ops
            .iter()
            .map(|op| SessionOp::try_from(pb::SessionOp::from(op)).expect("a client's op decodes"))
            .collect();
        let server = apply_all(&session, &received);
        // Compared as a client reads a session off the wire (Struct numbers are doubles).
        let on_the_wire = |r: Result<Session, DomainError>| {
            r.map(|s| Session::try_from(pb::GameSession::from(&s)).expect("a session decodes"))
        };
        prop_assert_eq!(on_the_wire(local), on_the_wire(server));
    }

    #[test]
    fn json_survives_the_wire(flags in json_object()) {
        // Canonical numbers (integral doubles as integers) are what the service stores.
        let canonical = struct_to_json(json_to_struct(&flags), "flags").unwrap();
        let again = struct_to_json(json_to_struct(&canonical), "flags").unwrap();
        prop_assert_eq!(again, canonical);
    }
}
