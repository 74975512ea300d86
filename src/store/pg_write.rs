//! The PostgreSQL write path: guarded writes of any number of sessions in ONE
//! statement (data-modifying CTEs are atomic), so concurrent writers share a round
//! trip and a commit:
//!
//!   WITH v AS (SELECT * FROM jsonb_to_recordset($1) AS v(i, id, expected, …)),
//!        u AS (UPDATE game_sessions s SET …, version = v.version
//!              FROM v WHERE s.id = v.id AND s.version = v.expected [AND s.user_id = v.uid]
//!              RETURNING v.i, s.id, s.version, what the events and records need),
//!        x AS (the earlier links of folded writes: u.steps),
//!        e AS (INSERT INTO session_events … FROM u UNION ALL … FROM x),
//!        r AS (INSERT INTO request_ids … the same, where a request id is given),
//!        p AS (DELETE FROM session_events … the events past each session's cap)
//!   SELECT i FROM u
//!
//! The rows travel as one JSON array, so the statement text never changes (one
//! prepared statement for every batch size) and each document is serialized once.
//! (Documents as text arrays beside it, parsed on their own, measured no faster:
//! BENCHMARKS.md, round six.)
//! A row that is not returned failed its guard (conflict or not found) and wrote
//! nothing. A row may carry earlier writes of its session (`steps`, see
//! [`Job::chain`]): the row takes the last state, each write its own event and record.
//! A batch that fails as a whole (say, one request id already recorded)
//! is retried one write per statement, so each caller gets the answer it would
//! have had alone.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::Value;

use super::{Owner, StoreError, error::is_unique_violation, job::Job};
use crate::domain::{
    JsonMap, Session,
    diff_keys::{FLAGS as FLAGS_KEY, NEW, RELATIONSHIPS as REL_KEY},
};

/// The statement, with table and column names from the sea-orm entities (the ones
/// the migrations create), so a rename cannot leave it behind.
static SQL: LazyLock<String> = LazyLock::new(|| {
    use super::entity::{event, request, session};
    use sea_orm::{EntityName, IdenStatic};
    let gs = session::Entity.table_name();
    let ev = event::Entity.table_name();
    let rq = request::Entity.table_name();
    use session::Column as S;
    let [id, user, version, updated, rules, node, time, flags, rel] = [
        S::Id,
        S::UserId,
        S::Version,
        S::UpdatedAt,
        S::RulesVersion,
        S::CurrentNodeId,
        S::WorldTime,
        S::Flags,
        S::Relationships,
    ]
    .map(|c| c.as_str());
    use event::Column as E;
    let [e_session, e_version, e_action, e_edge, e_node, e_diff, e_at] = [
        E::SessionId,
        E::Version,
        E::Action,
        E::EdgeId,
        E::NodeId,
        E::Diff,
        E::CreatedAt,
    ]
    .map(|c| c.as_str());
    use request::Column as R;
    let [r_user, r_id, r_session, r_action, r_version, r_snapshot, r_at] = [
        R::UserId,
        R::RequestId,
        R::SessionId,
        R::Action,
        R::Version,
        R::Snapshot,
        R::CreatedAt,
    ]
    .map(|c| c.as_str());
    let flags_diff =
        format!("CASE WHEN v.fh THEN jsonb_set(v.diff, '{{{FLAGS_KEY},{NEW}}}', v.flags) ELSE v.diff END");
    format!(
        "WITH v AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS v(
    i int, id bigint, expected bigint, uid bigint, at timestamptz, rules_version bigint,
    node bigint, wt float8, flags jsonb, rel jsonb,
    action text, edge_id bigint, node_id bigint, diff jsonb,
    req_user bigint, req_id text, snapshot jsonb, cut bigint, version bigint, steps jsonb,
    fh boolean, rh boolean)),
u AS (
  UPDATE {gs} s SET
    {version} = v.version, {updated} = v.at, {rules} = v.rules_version,
    {node} = COALESCE(v.node, s.{node}),
    {time} = COALESCE(v.wt, s.{time}),
    {flags} = COALESCE(v.flags, s.{flags}),
    {rel} = COALESCE(v.rel, s.{rel})
  FROM v
  WHERE s.{id} = v.id AND s.{version} = v.expected AND (v.uid IS NULL OR s.{user} = v.uid)
  -- Each later part reads only u: one relation per join, so the plan cannot pick a
  -- join order that leaves the cap out of p's index condition (a generic plan did:
  -- it then read every event of the session on each write).
  RETURNING v.i, s.{id} AS id, s.{version} AS version, v.at, v.cut, v.action, v.edge_id,
    v.node_id,
    -- the documents' new values were left out of the diff sent (see `Hollow`)
    CASE WHEN v.rh THEN jsonb_set({flags_diff}, '{{{REL_KEY},{NEW}}}', v.rel)
      ELSE {flags_diff} END AS diff,
    v.req_user, v.req_id, v.snapshot, v.steps),
x AS (
  SELECT u.id, u.at, u.cut AS cut_at, st.* FROM u,
    jsonb_to_recordset(u.steps) AS st(version bigint, action text, edge_id bigint,
      node_id bigint, diff jsonb, req_user bigint, req_id text, snapshot jsonb)),
e AS (
  INSERT INTO {ev} ({e_session}, {e_version}, {e_action}, {e_edge}, {e_node}, {e_diff}, {e_at})
  SELECT id, version, action, edge_id, node_id, diff, at FROM u
  UNION ALL
  -- a link already past the cap has no event to keep (p cannot see this statement's rows)
  SELECT id, version, action, edge_id, node_id, diff, at FROM x WHERE version > cut_at
  -- event ids follow versions (ListSessionEvents goes by id)
  ORDER BY 1, 2),
r AS (
  INSERT INTO {rq} ({r_user}, {r_id}, {r_session}, {r_action}, {r_version}, {r_snapshot}, {r_at})
  SELECT req_user, req_id, id, action, version, snapshot, at FROM u WHERE req_id IS NOT NULL
  UNION ALL
  SELECT req_user, req_id, id, action, version, snapshot, at FROM x WHERE req_id IS NOT NULL),
p AS (
  -- From the oldest event kept, not from version 1: the index range below it holds
  -- only the dead entries of earlier cuts, which a scan would visit every time.
  DELETE FROM {ev} d USING u
  WHERE u.cut > 0 AND d.{e_session} = u.id AND d.{e_version} <= u.cut
    AND d.{e_version} >= (SELECT min(o.{e_version}) FROM {ev} o WHERE o.{e_session} = u.id))
SELECT i FROM u"
    )
});

/// A job's outcome: the job back once written (its sessions are the answers), or
/// `None` when its guard failed.
pub(super) type Outcome = Result<Option<Job>, StoreError>;

/// One row of `$1`, borrowing from its job.
#[derive(Serialize)]
struct Row<'a> {
    i: usize,
    id: i64,
    expected: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<i64>,
    at: DateTime<Utc>,
    rules_version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wt: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<&'a JsonMap>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rel: Option<&'a JsonMap>,
    action: &'a str,
    edge_id: Option<i64>,
    node_id: Option<i64>,
    diff: Hollow<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_user: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<&'a Session>,
    /// The diff's `flags.new` / `relationships.new` were left out: they are `flags` / `rel`.
    #[serde(skip_serializing_if = "is_false")]
    fh: bool,
    #[serde(skip_serializing_if = "is_false")]
    rh: bool,
    cut: i64,
    /// The row's new version (the last link's, for a chain).
    version: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    steps: Vec<StepRow<'a>>,
}

/// An earlier link of a chain (see [`Job::chain`]).
#[derive(Serialize)]
struct StepRow<'a> {
    version: i64,
    action: &'a str,
    edge_id: Option<i64>,
    node_id: Option<i64>,
    diff: &'a JsonMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_user: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<&'a Session>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A diff sent without the `new` value of the documents the row sends anyway
/// (`flags`, `rel`): the statement puts them back from those columns, so PostgreSQL
/// parses each document once. (Its JSON lexer goes a character at a time and was ~a
/// fifth of its CPU per update, the 1 KiB `flags` being sent twice: BENCHMARKS.md,
/// round nine.) The stored diff is exactly the one computed.
struct Hollow<'a> {
    diff: &'a JsonMap,
    flags: bool,
    rel: bool,
}

impl<'a> Hollow<'a> {
    /// Leaves out a document's new value where the diff holds it and the row sends it.
    fn of(diff: &'a JsonMap, sends_flags: bool, sends_rel: bool) -> Self {
        let has_new = |key: &str| {
            diff.get(key)
                .and_then(Value::as_object)
                .is_some_and(|entry| entry.contains_key(NEW))
        };
        Self {
            diff,
            flags: sends_flags && has_new(FLAGS_KEY),
            rel: sends_rel && has_new(REL_KEY),
        }
    }
}

impl Serialize for Hollow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.diff.len()))?;
        for (key, value) in self.diff {
            let hole = (self.flags && key == FLAGS_KEY) || (self.rel && key == REL_KEY);
            match value {
                Value::Object(entry) if hole => map.serialize_entry(key, &WithoutNew(entry))?,
                _ => map.serialize_entry(key, value)?,
            }
        }
        map.end()
    }
}

/// A diff entry without its `new` value.
struct WithoutNew<'a>(&'a JsonMap);

impl Serialize for WithoutNew<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().filter(|(k, _)| k.as_str() != NEW))
    }
}

impl Job {
    fn row(&self, i: usize) -> Row<'_> {
        let n = &self.next;
        let c = self.changed;
        let diff = Hollow::of(&self.diff, c.flags, c.relationships);
        Row {
            i,
            id: n.id,
            expected: self.expected,
            uid: match self.owner {
                Owner::User(u) => Some(u),
                Owner::Any => None,
            },
            at: n.updated_at,
            rules_version: self.rules_version,
            node: c.current_node_id.then_some(n.current_node_id),
            wt: c.world_time.then_some(n.world_time),
            flags: c.flags.then_some(&n.flags),
            rel: c.relationships.then_some(&n.relationships),
            action: self.action,
            edge_id: self.edge_id,
            node_id: self.node_id,
            fh: diff.flags,
            rh: diff.rel,
            diff,
            req_user: self.request.as_ref().map(|(u, _)| *u),
            req_id: self.request.as_ref().map(|(_, r)| r.as_str()),
            // The recorded answer is exactly what the write returns.
            snapshot: self.request.as_ref().map(|_| n),
            cut: self.cut.unwrap_or(0),
            version: n.version,
            steps: self
                .earlier
                .iter()
                .map(|s| StepRow {
                    version: s.session.version,
                    action: s.action,
                    edge_id: s.edge_id,
                    node_id: s.node_id,
                    diff: &s.diff,
                    req_user: s.request.as_ref().map(|(u, _)| *u),
                    req_id: s.request.as_ref().map(|(_, r)| r.as_str()),
                    snapshot: s.request.as_ref().map(|_| &s.session),
                })
                .collect(),
        }
    }
}

/// Runs `jobs` as one statement; the outcome of each, in order.
pub(super) async fn write_all<C: ConnectionTrait>(db: &C, jobs: Vec<Job>) -> Vec<Outcome> {
    match run(db, &jobs).await {
        Ok(written) => jobs
            .into_iter()
            .zip(written)
            .map(|(job, ok)| Ok(ok.then_some(job)))
            .collect(),
        Err(e) if jobs.len() == 1 => vec![Err(e)],
        // One bad row fails them all: each again alone, for its own answer.
        Err(_) => {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(
                    run(db, std::slice::from_ref(&job))
                        .await
                        .map(|w| w[0].then_some(job)),
                );
            }
            out
        }
    }
}

/// Which jobs' guards held (and so were written).
async fn run<C: ConnectionTrait>(db: &C, jobs: &[Job]) -> Result<Vec<bool>, StoreError> {
    let rows: Vec<Row<'_>> = jobs.iter().enumerate().map(|(i, j)| j.row(i)).collect();
    // Text, cast to jsonb by the statement: serialized once here, parsed once there.
    let rows = serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, SQL.as_str(), [rows.into()]);
    let returned = match db.query_all_raw(statement).await {
        Ok(rows) => rows,
        Err(e) if is_unique_violation(&e) => return Err(StoreError::DuplicateRequest),
        Err(e) => return Err(e.into()),
    };
    let mut written = vec![false; jobs.len()];
    for row in returned {
        let i: i32 = row.try_get("", "i")?;
        if let Some(w) = written.get_mut(i as usize) {
            *w = true;
        }
    }
    Ok(written)
}
