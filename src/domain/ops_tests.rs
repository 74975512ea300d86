//! The exact JSON shape every helper produces.

use serde_json::{Value, json};

use super::*;
use crate::domain::session::tests::sample;

fn run(ops: &[SessionOp]) -> Session {
    apply_all(&sample(), ops).expect("ops apply")
}

fn flags(s: &Session) -> Value {
    Value::Object(s.flags.clone())
}

#[test]
fn update_npc_relationship_merges_the_patch_into_the_entry() {
    let patch = NpcPatch {
        affinity: Some(40.0),
        flags: Some(vec![json!("met")]),
        ..Default::default()
    };
    let s = run(&[
        update_npc_relationship(
            5,
            NpcPatch {
                trust: Some(12.5),
                ..Default::default()
            },
        ),
        update_npc_relationship(5, patch),
    ]);
    assert_eq!(
        s.relationships["npc:5"],
        json!({"trust": 12.5, "affinity": 40, "flags": ["met"]})
    );
}

#[test]
fn add_inventory_item_appends_then_adds_to_qty() {
    let s = run(&[
        add_inventory_item("sword", 1),
        add_inventory_item("potion", 2),
        add_inventory_item("sword", 3),
    ]);
    assert_eq!(
        flags(&s),
        json!({"inventory": {"items": [{"id": "sword", "qty": 4}, {"id": "potion", "qty": 2}]}})
    );
}

#[test]
fn remove_inventory_item_lowers_qty_and_drops_the_entry_at_zero() {
    let s = run(&[
        add_inventory_item("potion", 3),
        remove_inventory_item("potion", 1),
    ]);
    assert_eq!(
        flags(&s)["inventory"]["items"],
        json!([{"id": "potion", "qty": 2}])
    );
    let s = run(&[
        add_inventory_item("potion", 3),
        remove_inventory_item("potion", 3),
    ]);
    assert_eq!(flags(&s)["inventory"]["items"], json!([]));
}

#[test]
fn removing_more_than_is_held_fails_and_leaves_the_session_unchanged() {
    let base = run(&[add_inventory_item("potion", 1)]);
    for op in [
        remove_inventory_item("potion", 2),
        remove_inventory_item("elixir", 1),
    ] {
        let err = apply_all(&base, &[op]).unwrap_err();
        assert!(matches!(
            err,
            DomainError::Precondition {
                reason: "INSUFFICIENT_QUANTITY",
                ..
            }
        ));
    }
    assert_eq!(
        flags(&base)["inventory"]["items"],
        json!([{"id": "potion", "qty": 1}])
    );
}

#[test]
fn update_arc_stage_creates_the_arc_then_changes_only_the_stage() {
    let s = run(&[update_arc_stage("main", 1)]);
    assert_eq!(
        flags(&s),
        json!({"arcs": {"main": {"stage": 1, "seenScenes": []}}})
    );
    let s = run(&[mark_scene_seen("main", 4), update_arc_stage("main", 2)]);
    assert_eq!(
        flags(&s),
        json!({"arcs": {"main": {"stage": 2, "seenScenes": [4]}}})
    );
}

#[test]
fn mark_scene_seen_appends_once_and_starts_new_arcs_at_stage_zero() {
    let s = run(&[
        mark_scene_seen("side", 7),
        mark_scene_seen("side", 7),
        mark_scene_seen("side", 8),
    ]);
    assert_eq!(
        flags(&s),
        json!({"arcs": {"side": {"stage": 0, "seenScenes": [7, 8]}}})
    );
}

#[test]
fn update_quest_status_creates_the_quest_then_changes_only_the_status() {
    let s = run(&[update_quest_status("q1", "in_progress")]);
    assert_eq!(
        flags(&s),
        json!({"quests": {"q1": {"status": "in_progress", "stepsCompleted": 0}}})
    );
    let s = run(&[increment_quest_steps("q1", 2), update_quest_status("q1", "done")]);
    assert_eq!(
        flags(&s),
        json!({"quests": {"q1": {"status": "done", "stepsCompleted": 2}}})
    );
}

#[test]
fn increment_quest_steps_honours_n_and_starts_new_quests_in_progress() {
    let s = run(&[increment_quest_steps("q2", 3)]);
    assert_eq!(
        flags(&s),
        json!({"quests": {"q2": {"status": "in_progress", "stepsCompleted": 3}}})
    );
    let s = run(&[increment_quest_steps("q2", 3), increment_quest_steps("q2", 4)]);
    assert_eq!(flags(&s)["quests"]["q2"]["stepsCompleted"], json!(7));
}

#[test]
fn trigger_event_records_the_world_time_and_end_event_keeps_it() {
    let mut base = sample();
    base.world_time = 120.0;
    let s = apply_all(&base, &[trigger_event("storm")]).unwrap();
    assert_eq!(
        flags(&s),
        json!({"events": {"storm": {"active": true, "triggeredAt": 120}}})
    );
    let s = apply_all(&s, &[end_event("storm")]).unwrap();
    assert_eq!(
        flags(&s),
        json!({"events": {"storm": {"active": false, "triggeredAt": 120}}})
    );
}

#[test]
fn end_event_of_an_unknown_event_is_a_no_op() {
    let s = run(&[end_event("nothing")]);
    assert_eq!(flags(&s), json!({}));
}

#[test]
fn set_flag_creates_objects_on_the_way_and_none_removes() {
    let s = run(&[
        set_flag("a.b.c", Some(json!(1))),
        set_flag("a.d", Some(json!("x"))),
    ]);
    assert_eq!(flags(&s), json!({"a": {"b": {"c": 1}, "d": "x"}}));
    let s = apply_all(&s, &[set_flag("a.b", None), set_flag("zz.yy", None)]).unwrap();
    assert_eq!(flags(&s), json!({"a": {"d": "x"}}));
}

#[test]
fn set_world_time_validates_like_update_session() {
    assert_eq!(run(&[set_world_time(42.0)]).world_time, 42.0);
    let err = apply_all(&sample(), &[set_world_time(f64::NAN)]).unwrap_err();
    assert!(matches!(err, DomainError::Invalid(v) if v.field == "ops[0].set_world_time.world_time"));
}

#[test]
fn bad_arguments_name_the_op_and_field() {
    let cases = [
        (add_inventory_item("", 1), "ops[0].add_inventory_item.item_id"),
        (add_inventory_item("x", 0), "ops[0].add_inventory_item.qty"),
        (remove_inventory_item("x", -1), "ops[0].remove_inventory_item.qty"),
        (update_arc_stage(" ", 1), "ops[0].update_arc_stage.arc_id"),
        (update_quest_status("q", ""), "ops[0].update_quest_status.status"),
        (increment_quest_steps("q", 0), "ops[0].increment_quest_steps.n"),
        (trigger_event(""), "ops[0].trigger_event.event_id"),
        (set_flag("a..b", Some(json!(1))), "ops[0].set_flag.path"),
        // Integers beyond 2^53 would not come back from the wire as the same number.
        (
            update_arc_stage("a", (1 << 53) + 1),
            "ops[0].update_arc_stage.stage",
        ),
        (
            mark_scene_seen("a", -(1 << 53) - 1),
            "ops[0].mark_scene_seen.scene_id",
        ),
        (add_inventory_item("x", i64::MAX), "ops[0].add_inventory_item.qty"),
        (
            increment_quest_steps("q", 1 << 60),
            "ops[0].increment_quest_steps.n",
        ),
        (
            update_npc_relationship(
                1,
                NpcPatch {
                    trust: Some(f64::INFINITY),
                    ..Default::default()
                },
            ),
            "ops[0].update_npc_relationship.trust",
        ),
    ];
    for (op, field) in cases {
        match apply_all(&sample(), &[op]) {
            Err(DomainError::Invalid(v)) => assert_eq!(v.field, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn a_wrongly_shaped_stored_value_is_a_failed_precondition() {
    let s = run(&[set_flag("inventory", Some(json!("not an object")))]);
    let err = apply_all(&s, &[add_inventory_item("x", 1)]).unwrap_err();
    assert!(matches!(
        err,
        DomainError::Precondition {
            reason: "INVALID_STATE",
            ..
        }
    ));
}

#[test]
fn helper_arithmetic_stays_exact_on_the_wire() {
    let max = 1_i64 << 53;
    let s = run(&[add_inventory_item("x", max - 1)]);
    let err = apply_all(&s, &[add_inventory_item("x", 2)]).unwrap_err();
    assert!(matches!(err, DomainError::Invalid(v) if v.field == "ops[0].add_inventory_item.qty"));
    let s = run(&[increment_quest_steps("q", max)]);
    assert!(apply_all(&s, &[increment_quest_steps("q", 1)]).is_err());
    // A count stored beyond 2^53 (by set_flag) is no count to do arithmetic on.
    let s = run(&[set_flag(
        "inventory",
        Some(json!({"items": [{"id": "x", "qty": 1e17}]})),
    )]);
    let err = apply_all(&s, &[remove_inventory_item("x", 1)]).unwrap_err();
    assert!(matches!(
        err,
        DomainError::Precondition {
            reason: "INVALID_STATE",
            ..
        }
    ));
    // Nor is an integer beyond it (as a double it would round into range).
    let s = run(&[set_flag(
        "quests",
        Some(json!({"q": {"stepsCompleted": max + 1}})),
    )]);
    assert!(matches!(
        apply_all(&s, &[increment_quest_steps("q", 1)]).unwrap_err(),
        DomainError::Precondition {
            reason: "INVALID_STATE",
            ..
        }
    ));
}
