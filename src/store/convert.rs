//! Rows ⇄ domain values.

use sea_orm::Set;
use serde_json::Value;

use super::{
    StoreError,
    entity::{event, session, world},
};
use crate::domain::{JsonMap, Session, SessionEvent, WorldRules};

fn map_of(value: Value, column: &str) -> Result<JsonMap, StoreError> {
    match value {
        Value::Object(map) => Ok(map),
        other => Err(StoreError::Corrupt(format!(
            "{column} holds {} instead of an object",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub(super) fn session_from(m: session::Model) -> Result<Session, StoreError> {
    Ok(Session {
        id: m.id,
        user_id: m.user_id,
        scene_id: m.scene_id,
        current_node_id: m.current_node_id,
        world_id: m.world_id,
        flags: map_of(m.flags, "flags")?,
        relationships: map_of(m.relationships, "relationships")?,
        world_time: m.world_time,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// A new row for `s` (the id is assigned by the database).
pub(super) fn session_row(s: &Session, rules_version: i64) -> session::ActiveModel {
    session::ActiveModel {
        id: sea_orm::NotSet,
        user_id: Set(s.user_id),
        scene_id: Set(s.scene_id),
        current_node_id: Set(s.current_node_id),
        world_id: Set(s.world_id),
        flags: Set(Value::Object(s.flags.clone())),
        relationships: Set(Value::Object(s.relationships.clone())),
        world_time: Set(s.world_time),
        version: Set(s.version),
        rules_version: Set(rules_version),
        created_at: Set(s.created_at),
        updated_at: Set(s.updated_at),
    }
}

pub(super) fn event_from(m: event::Model) -> Result<SessionEvent, StoreError> {
    Ok(SessionEvent {
        id: m.id,
        session_id: m.session_id,
        version: m.version,
        action: m.action,
        edge_id: m.edge_id,
        node_id: m.node_id,
        diff: map_of(m.diff, "diff")?,
        created_at: m.created_at,
    })
}

pub(super) fn rules_from(m: world::Model) -> Result<WorldRules, StoreError> {
    let mut rules: WorldRules = serde_json::from_value(m.rules)
        .map_err(|e| StoreError::Corrupt(format!("world_rules.rules: {e}")))?;
    rules.world_id = m.world_id;
    rules.version = m.version;
    rules.updated_at = Some(m.updated_at);
    Ok(rules)
}

pub(super) fn snapshot_from(value: Value) -> Result<Session, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("request_ids.snapshot: {e}")))
}
