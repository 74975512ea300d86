//! The PostgreSQL write path: the compare-and-set, its event, its idempotency record
//! and the event cap in ONE statement (data-modifying CTEs are atomic), so a guarded
//! write is a single round trip in autocommit instead of BEGIN … COMMIT.
//!
//!   WITH u AS (UPDATE game_sessions SET …, version = version + 1
//!              WHERE id = $ AND version = $ [AND user_id = $] RETURNING id, version, updated_at),
//!        e AS (INSERT INTO session_events … SELECT … FROM u),
//!       [r AS (INSERT INTO request_ids … SELECT … FROM u),]
//!       [p AS (DELETE FROM session_events WHERE … AND EXISTS (SELECT 1 FROM u))]
//!   SELECT version FROM u
//!
//! No row back means the guard failed (conflict or not found), and nothing was written.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value as SqlValue};
use serde_json::Value;

use super::{
    Owner, StoreError,
    error::is_unique_violation,
    write::{Planned, WriteMeta},
};
use crate::domain::{Session, diff};

/// Numbered parameters for one statement.
#[derive(Default)]
struct Params(Vec<SqlValue>);

impl Params {
    fn add(&mut self, v: impl Into<SqlValue>) -> String {
        self.0.push(v.into());
        format!("${}", self.0.len())
    }
}

/// Writes `planned` over `base` if the row is still at `base.version`.
pub(super) async fn write_planned<C: ConnectionTrait>(
    db: &C,
    owner: Owner,
    base: &Session,
    planned: &Planned,
    meta: WriteMeta<'_>,
    max_events: i64,
    now: DateTime<Utc>,
) -> Result<Option<Session>, StoreError> {
    let next = &planned.next;
    let mut p = Params::default();
    let mut sets = vec![
        "version = version + 1".to_string(),
        format!("updated_at = {}", p.add(now)),
        format!("rules_version = {}", p.add(planned.rules_version)),
    ];
    if next.current_node_id != base.current_node_id {
        sets.push(format!("current_node_id = {}", p.add(next.current_node_id)));
    }
    if next.world_time != base.world_time {
        sets.push(format!("world_time = {}", p.add(next.world_time)));
    }
    if next.flags != base.flags {
        sets.push(format!("flags = {}", p.add(Value::Object(next.flags.clone()))));
    }
    if next.relationships != base.relationships {
        sets.push(format!(
            "relationships = {}",
            p.add(Value::Object(next.relationships.clone()))
        ));
    }
    let id = p.add(base.id);
    let mut guard = format!("id = {id} AND version = {}", p.add(base.version));
    if let Owner::User(user) = owner {
        guard.push_str(&format!(" AND user_id = {}", p.add(user)));
    }
    let action = p.add(meta.action);
    let event = format!(
        "INSERT INTO session_events (session_id, version, action, edge_id, node_id, diff, created_at) \
         SELECT id, version, {action}, {}, {}, {}, updated_at FROM u",
        p.add(meta.edge_id),
        p.add(meta.node_id),
        p.add(Value::Object(diff(Some(base), next))),
    );
    let mut sql = format!(
        // Only the version comes back: every other column is what was just written,
        // so the JSON need not travel back and be parsed again.
        "WITH u AS (UPDATE game_sessions SET {} WHERE {guard} RETURNING id, version, updated_at), e AS ({event})",
        sets.join(", ")
    );
    if let Some(key) = meta.request {
        // The recorded answer is exactly what RETURNING will give.
        let snapshot = Session {
            version: base.version + 1,
            updated_at: now,
            ..next.clone()
        };
        let snapshot = serde_json::to_value(&snapshot).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sql.push_str(&format!(
            ", r AS (INSERT INTO request_ids (user_id, request_id, session_id, action, version, snapshot, created_at) \
             SELECT {}, {}, id, {action}, version, {}, {} FROM u)",
            p.add(key.user_id),
            p.add(key.request_id.as_str()),
            p.add(snapshot),
            p.add(now),
        ));
    }
    let cut = base.version + 1 - max_events;
    if cut > 0 {
        sql.push_str(&format!(
            ", p AS (DELETE FROM session_events WHERE session_id = {id} AND version <= {} AND EXISTS (SELECT 1 FROM u))",
            p.add(cut)
        ));
    }
    sql.push_str(" SELECT version FROM u");
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, p.0);
    let row = match db.query_one_raw(statement).await {
        Ok(row) => row,
        Err(e) if is_unique_violation(&e) => return Err(StoreError::DuplicateRequest),
        Err(e) => return Err(e.into()),
    };
    let Some(row) = row else { return Ok(None) };
    let version: i64 = row.try_get("", "version")?;
    Ok(Some(Session {
        version,
        updated_at: now,
        ..next.clone()
    }))
}
