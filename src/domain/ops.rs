//! The session helpers, as typed mutations.
//!
//! These are the exact JSON shapes the game already uses. The client applies them
//! optimistically and the server applies them in MutateSession: one implementation.

use serde_json::{Value, json};

use super::{
    DomainError, JsonMap, Session, WorldTime,
    json::{MAX_EXACT_INT, number},
};

/// A partial update of one NPC relationship; present fields overwrite.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NpcPatch {
    pub affinity: Option<f64>,
    pub trust: Option<f64>,
    pub chemistry: Option<f64>,
    pub tension: Option<f64>,
    /// Replaces the entry's `flags` list when present.
    pub flags: Option<Vec<Value>>,
}

/// One typed change of a session (serializable, so a client can keep queued
/// mutations across a restart).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SessionOp {
    UpdateNpcRelationship {
        npc_id: i64,
        patch: NpcPatch,
    },
    AddInventoryItem {
        item_id: String,
        qty: i64,
    },
    RemoveInventoryItem {
        item_id: String,
        qty: i64,
    },
    UpdateArcStage {
        arc_id: String,
        stage: i64,
    },
    MarkSceneSeen {
        arc_id: String,
        scene_id: i64,
    },
    UpdateQuestStatus {
        quest_id: String,
        status: String,
    },
    IncrementQuestSteps {
        quest_id: String,
        n: i64,
    },
    TriggerEvent {
        event_id: String,
    },
    EndEvent {
        event_id: String,
    },
    SetWorldTime {
        world_time: f64,
    },
    /// Sets the flag at a dot-separated path; `None` removes it.
    SetFlag {
        path: String,
        value: Option<Value>,
    },
}

/// Merges `patch` into `relationships["npc:<npc_id>"]`.
pub fn update_npc_relationship(npc_id: i64, patch: NpcPatch) -> SessionOp {
    SessionOp::UpdateNpcRelationship { npc_id, patch }
}
/// Adds `qty` of an item to `flags.inventory.items`.
pub fn add_inventory_item(item_id: impl Into<String>, qty: i64) -> SessionOp {
    SessionOp::AddInventoryItem {
        item_id: item_id.into(),
        qty,
    }
}
/// Removes `qty` of an item; fails if fewer are held.
pub fn remove_inventory_item(item_id: impl Into<String>, qty: i64) -> SessionOp {
    SessionOp::RemoveInventoryItem {
        item_id: item_id.into(),
        qty,
    }
}
/// Sets the stage of an arc.
pub fn update_arc_stage(arc_id: impl Into<String>, stage: i64) -> SessionOp {
    SessionOp::UpdateArcStage {
        arc_id: arc_id.into(),
        stage,
    }
}
/// Records that a scene of an arc was seen.
pub fn mark_scene_seen(arc_id: impl Into<String>, scene_id: i64) -> SessionOp {
    SessionOp::MarkSceneSeen {
        arc_id: arc_id.into(),
        scene_id,
    }
}
/// Sets the status of a quest.
pub fn update_quest_status(quest_id: impl Into<String>, status: impl Into<String>) -> SessionOp {
    SessionOp::UpdateQuestStatus {
        quest_id: quest_id.into(),
        status: status.into(),
    }
}
/// Adds `n` completed steps to a quest.
pub fn increment_quest_steps(quest_id: impl Into<String>, n: i64) -> SessionOp {
    SessionOp::IncrementQuestSteps {
        quest_id: quest_id.into(),
        n,
    }
}
/// Marks a game event active at the session's world time.
pub fn trigger_event(event_id: impl Into<String>) -> SessionOp {
    SessionOp::TriggerEvent {
        event_id: event_id.into(),
    }
}
/// Marks a game event inactive, keeping when it was triggered.
pub fn end_event(event_id: impl Into<String>) -> SessionOp {
    SessionOp::EndEvent {
        event_id: event_id.into(),
    }
}
/// Sets the session's world time.
pub fn set_world_time(world_time: f64) -> SessionOp {
    SessionOp::SetWorldTime { world_time }
}
/// Sets (or with `None` removes) the flag at a dot-separated path.
pub fn set_flag(path: impl Into<String>, value: Option<Value>) -> SessionOp {
    SessionOp::SetFlag {
        path: path.into(),
        value,
    }
}

impl SessionOp {
    /// The proto field name of this op, used to name fields in errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::UpdateNpcRelationship { .. } => "update_npc_relationship",
            Self::AddInventoryItem { .. } => "add_inventory_item",
            Self::RemoveInventoryItem { .. } => "remove_inventory_item",
            Self::UpdateArcStage { .. } => "update_arc_stage",
            Self::MarkSceneSeen { .. } => "mark_scene_seen",
            Self::UpdateQuestStatus { .. } => "update_quest_status",
            Self::IncrementQuestSteps { .. } => "increment_quest_steps",
            Self::TriggerEvent { .. } => "trigger_event",
            Self::EndEvent { .. } => "end_event",
            Self::SetWorldTime { .. } => "set_world_time",
            Self::SetFlag { .. } => "set_flag",
        }
    }

    /// Applies the op. On error the session may be partly changed: apply to a copy.
    pub fn apply(&self, s: &mut Session) -> Result<(), DomainError> {
        match self {
            Self::UpdateNpcRelationship { npc_id, patch } => npc(s, *npc_id, patch),
            Self::AddInventoryItem { item_id, qty } => add_item(s, item_id, *qty),
            Self::RemoveInventoryItem { item_id, qty } => remove_item(s, item_id, *qty),
            Self::UpdateArcStage { arc_id, stage } => {
                let arc = arc(s, arc_id)?;
                arc.insert("stage".into(), json!(exact(*stage, "stage")?));
                Ok(())
            }
            Self::MarkSceneSeen { arc_id, scene_id } => {
                let scene_id = exact(*scene_id, "scene_id")?;
                let arc = arc(s, arc_id)?;
                let seen = list_in(arc, "seenScenes", "flags.arcs.seenScenes")?;
                if !seen.iter().any(|v| v.as_i64() == Some(scene_id)) {
                    seen.push(json!(scene_id));
                }
                Ok(())
            }
            Self::UpdateQuestStatus { quest_id, status } => {
                let quest = entry(
                    &mut s.flags,
                    "quests",
                    non_empty(quest_id, "quest_id")?,
                    || json!({"status": "", "stepsCompleted": 0}),
                )?;
                quest.insert("status".into(), json!(non_empty(status, "status")?));
                Ok(())
            }
            Self::IncrementQuestSteps { quest_id, n } => increment_steps(s, quest_id, *n),
            Self::TriggerEvent { event_id } => {
                let t = number(s.world_time);
                let events = object_at(&mut s.flags, &["events"])?;
                let id = non_empty(event_id, "event_id")?;
                events.insert(id.into(), json!({"active": true, "triggeredAt": t}));
                Ok(())
            }
            Self::EndEvent { event_id } => end(s, non_empty(event_id, "event_id")?),
            Self::SetWorldTime { world_time } => {
                s.world_time = WorldTime::parse(*world_time, "world_time")?.get();
                Ok(())
            }
            Self::SetFlag { path, value } => set_path(&mut s.flags, path, value.clone()),
        }
    }
}

/// Applies ops in order to a copy; the session is untouched unless all succeed.
pub fn apply_all(s: &Session, ops: &[SessionOp]) -> Result<Session, DomainError> {
    let mut next = s.clone();
    for (i, op) in ops.iter().enumerate() {
        op.apply(&mut next)
            .map_err(|e| e.in_field(&format!("ops[{i}].{}", op.name())))?;
    }
    Ok(next)
}

fn non_empty<'a>(value: &'a str, field: &str) -> Result<&'a str, DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    Ok(value)
}

fn positive_qty(qty: i64) -> Result<i64, DomainError> {
    if qty < 1 {
        return Err(DomainError::invalid("qty", "must be at least 1"));
    }
    exact(qty, "qty")
}

/// An integer that survives the wire: within ±2^53 (see [`MAX_EXACT_INT`]).
fn exact(value: i64, field: &str) -> Result<i64, DomainError> {
    if value.unsigned_abs() > MAX_EXACT_INT as u64 {
        return Err(DomainError::invalid(
            field,
            "must be within ±2^53 (9007199254740992): larger integers are not exact in JSON numbers",
        ));
    }
    Ok(value)
}

/// A sum a helper would store, refused (naming the argument `field`) beyond 2^53.
fn exact_total(total: i64, field: &str, what: &str) -> Result<i64, DomainError> {
    if total > MAX_EXACT_INT {
        return Err(DomainError::invalid(
            field,
            format!("{what} would be {total}, beyond 2^53 (not exact in JSON numbers)"),
        ));
    }
    Ok(total)
}

fn bad_shape(path: &str, want: &str) -> DomainError {
    DomainError::precondition("INVALID_STATE", format!("{path} is not {want}"))
}

/// The object at `path` under `root`, created (with empty objects) where missing.
fn object_at<'a>(root: &'a mut JsonMap, path: &[&str]) -> Result<&'a mut JsonMap, DomainError> {
    let mut current = root;
    let mut walked = String::from("flags");
    for key in path {
        walked.push('.');
        walked.push_str(key);
        let slot = current
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(JsonMap::new()));
        current = slot
            .as_object_mut()
            .ok_or_else(|| bad_shape(&walked, "an object"))?;
    }
    Ok(current)
}

/// `flags[collection][id]`, created from `init` if missing.
fn entry<'a>(
    flags: &'a mut JsonMap,
    collection: &str,
    id: &str,
    init: impl FnOnce() -> Value,
) -> Result<&'a mut JsonMap, DomainError> {
    let parent = object_at(flags, &[collection])?;
    parent
        .entry(id.to_owned())
        .or_insert_with(init)
        .as_object_mut()
        .ok_or_else(|| bad_shape(&format!("flags.{collection}.{id}"), "an object"))
}

/// `flags.arcs[arc_id]`, created at stage 0 with no scenes seen if missing.
fn arc<'a>(s: &'a mut Session, arc_id: &str) -> Result<&'a mut JsonMap, DomainError> {
    let id = non_empty(arc_id, "arc_id")?;
    entry(&mut s.flags, "arcs", id, || json!({"stage": 0, "seenScenes": []}))
}

fn list_in<'a>(obj: &'a mut JsonMap, key: &str, path: &str) -> Result<&'a mut Vec<Value>, DomainError> {
    obj.entry(key.to_owned())
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or_else(|| bad_shape(path, "a list"))
}

/// A stored count: an integer within ±2^53 (a larger one, written by `set_flag` or
/// an update, is not a count the helpers can do exact arithmetic on).
fn as_count(v: Option<&Value>, path: &str) -> Result<i64, DomainError> {
    let limit = MAX_EXACT_INT as f64;
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_i64()
            .filter(|n| n.unsigned_abs() <= MAX_EXACT_INT as u64)
            // Only a stored double may stand for an integer: an integer beyond 2^53
            // read as a double would round into range and be taken as a wrong count.
            .or_else(|| {
                v.as_f64()
                    .filter(|f| v.is_f64() && f.fract() == 0.0 && f.abs() <= limit)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| bad_shape(path, "an integer within ±2^53")),
    }
}

fn npc(s: &mut Session, npc_id: i64, patch: &NpcPatch) -> Result<(), DomainError> {
    let key = format!("npc:{npc_id}");
    let entry = s
        .relationships
        .entry(key.clone())
        .or_insert_with(|| Value::Object(JsonMap::new()))
        .as_object_mut()
        .ok_or_else(|| bad_shape(&format!("relationships.{key}"), "an object"))?;
    let stats = [
        ("affinity", patch.affinity),
        ("trust", patch.trust),
        ("chemistry", patch.chemistry),
        ("tension", patch.tension),
    ];
    for (name, value) in stats {
        if let Some(v) = value {
            if !v.is_finite() {
                return Err(DomainError::invalid(name, "must be a finite number"));
            }
            entry.insert(name.into(), number(v));
        }
    }
    if let Some(flags) = &patch.flags {
        entry.insert("flags".into(), Value::Array(flags.clone()));
    }
    Ok(())
}

fn items(s: &mut Session) -> Result<&mut Vec<Value>, DomainError> {
    let inventory = object_at(&mut s.flags, &["inventory"])?;
    list_in(inventory, "items", "flags.inventory.items")
}

fn find_item(items: &[Value], id: &str) -> Option<usize> {
    items
        .iter()
        .position(|i| i.get("id").and_then(Value::as_str) == Some(id))
}

fn add_item(s: &mut Session, item_id: &str, qty: i64) -> Result<(), DomainError> {
    let id = non_empty(item_id, "item_id")?;
    let qty = positive_qty(qty)?;
    let items = items(s)?;
    match find_item(items, id) {
        Some(i) => {
            let held = as_count(items[i].get("qty"), "flags.inventory.items.qty")?;
            // Both are within 2^53, so the sum cannot overflow an i64.
            let total = exact_total(held + qty, "qty", "the held quantity")?;
            items[i]["qty"] = json!(total);
        }
        None => items.push(json!({"id": id, "qty": qty})),
    }
    Ok(())
}

fn remove_item(s: &mut Session, item_id: &str, qty: i64) -> Result<(), DomainError> {
    let id = non_empty(item_id, "item_id")?;
    let qty = positive_qty(qty)?;
    let items = items(s)?;
    let index = find_item(items, id);
    let held = match index {
        Some(i) => as_count(items[i].get("qty"), "flags.inventory.items.qty")?,
        None => 0,
    };
    if held < qty {
        return Err(DomainError::precondition(
            "INSUFFICIENT_QUANTITY",
            format!("cannot remove {qty} of item {id:?}: {held} held"),
        ));
    }
    let i = index.expect("held > 0 means the item is present");
    if held == qty {
        items.remove(i);
    } else {
        items[i]["qty"] = json!(held - qty);
    }
    Ok(())
}

fn increment_steps(s: &mut Session, quest_id: &str, n: i64) -> Result<(), DomainError> {
    let id = non_empty(quest_id, "quest_id")?;
    if n < 1 {
        return Err(DomainError::invalid("n", "must be at least 1"));
    }
    let n = exact(n, "n")?;
    let quest = entry(
        &mut s.flags,
        "quests",
        id,
        || json!({"status": "in_progress", "stepsCompleted": 0}),
    )?;
    let done = as_count(quest.get("stepsCompleted"), "flags.quests.stepsCompleted")?;
    let total = exact_total(done + n, "n", "stepsCompleted")?;
    quest.insert("stepsCompleted".into(), json!(total));
    Ok(())
}

fn end(s: &mut Session, event_id: &str) -> Result<(), DomainError> {
    let Some(events) = s.flags.get_mut("events") else {
        return Ok(());
    };
    let events = events
        .as_object_mut()
        .ok_or_else(|| bad_shape("flags.events", "an object"))?;
    if let Some(event) = events.get_mut(event_id) {
        let event = event
            .as_object_mut()
            .ok_or_else(|| bad_shape(&format!("flags.events.{event_id}"), "an object"))?;
        event.insert("active".into(), json!(false));
    }
    Ok(())
}

fn set_path(flags: &mut JsonMap, path: &str, value: Option<Value>) -> Result<(), DomainError> {
    let keys: Vec<&str> = path.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(DomainError::invalid(
            "path",
            "must be dot-separated non-empty keys, like \"a.b.c\"",
        ));
    }
    let (last, parents) = keys.split_last().expect("split yields at least one key");
    match value {
        Some(v) => {
            object_at(flags, parents)?.insert((*last).to_owned(), v);
        }
        // Removing walks existing objects only: nothing is created to remove nothing.
        None => {
            let mut current = flags;
            for key in parents {
                match current.get_mut(*key).and_then(Value::as_object_mut) {
                    Some(next) => current = next,
                    None => return Ok(()),
                }
            }
            current.remove(*last);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "ops_tests.rs"]
mod tests;
