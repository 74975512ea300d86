//! The PostgreSQL write path: guarded writes of any number of sessions in ONE
//! statement (data-modifying CTEs are atomic), so concurrent writers share a round
//! trip and a commit:
//!
//!   WITH v AS (SELECT * FROM jsonb_to_recordset($1) AS v(i, id, expected, …)),
//!        u AS (UPDATE game_sessions s SET …, version = s.version + 1
//!              FROM v WHERE s.id = v.id AND s.version = v.expected [AND s.user_id = v.uid]
//!              RETURNING v.i, s.id, s.version),
//!        e AS (INSERT INTO session_events … FROM u JOIN v),
//!        r AS (INSERT INTO request_ids … FROM u JOIN v WHERE v.req_id IS NOT NULL),
//!        p AS (DELETE FROM session_events … the events past each session's cap)
//!   SELECT i FROM u
//!
//! The rows travel as one JSON array, so the statement text never changes (one
//! prepared statement for every batch size) and each document is serialized once.
//! A row that is not returned failed its guard (conflict or not found) and wrote
//! nothing. A batch that fails as a whole (say, one request id already recorded)
//! is retried one write per statement, so each caller gets the answer it would
//! have had alone.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde::Serialize;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Owner, StoreError, error::is_unique_violation, write::WriteMeta};
use crate::domain::{JsonMap, Session, changes};

const SQL: &str = "\
WITH v AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb) AS v(
    i int, id bigint, expected bigint, uid bigint, at timestamptz, rules_version bigint,
    node bigint, wt float8, flags jsonb, rel jsonb,
    action text, edge_id bigint, node_id bigint, diff jsonb,
    req_user bigint, req_id text, snapshot jsonb, cut bigint)),
u AS (
  UPDATE game_sessions s SET
    version = s.version + 1, updated_at = v.at, rules_version = v.rules_version,
    current_node_id = COALESCE(v.node, s.current_node_id),
    world_time = COALESCE(v.wt, s.world_time),
    flags = COALESCE(v.flags, s.flags),
    relationships = COALESCE(v.rel, s.relationships)
  FROM v
  WHERE s.id = v.id AND s.version = v.expected AND (v.uid IS NULL OR s.user_id = v.uid)
  RETURNING v.i, s.id, s.version),
e AS (
  INSERT INTO session_events (session_id, version, action, edge_id, node_id, diff, created_at)
  SELECT u.id, u.version, v.action, v.edge_id, v.node_id, v.diff, v.at FROM u JOIN v ON v.i = u.i),
r AS (
  INSERT INTO request_ids (user_id, request_id, session_id, action, version, snapshot, created_at)
  SELECT v.req_user, v.req_id, u.id, v.action, u.version, v.snapshot, v.at
  FROM u JOIN v ON v.i = u.i WHERE v.req_id IS NOT NULL),
p AS (
  DELETE FROM session_events d USING u JOIN v ON v.i = u.i
  WHERE v.cut > 0 AND d.session_id = u.id AND d.version <= v.cut)
SELECT i FROM u";

/// One guarded write: `next` (already at its new version and time) replaces the
/// session if it is still at `expected`.
#[derive(Debug)]
pub(super) struct Job {
    pub owner: Owner,
    pub expected: i64,
    pub next: Session,
    pub rules_version: i64,
    /// Which fields differ from the base (only those are sent).
    pub changed: crate::domain::Changed,
    pub diff: JsonMap,
    pub action: &'static str,
    pub edge_id: Option<i64>,
    pub node_id: Option<i64>,
    /// The idempotency record's (user, request id), if any.
    pub request: Option<(i64, String)>,
    pub max_events: i64,
}

/// A job's outcome: the written session, or `None` when its guard failed.
pub(super) type Outcome = Result<Option<Session>, StoreError>;

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
    diff: &'a JsonMap,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_user: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<&'a Session>,
    cut: i64,
}

impl Job {
    fn row(&self, i: usize) -> Row<'_> {
        let n = &self.next;
        let c = self.changed;
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
            diff: &self.diff,
            req_user: self.request.as_ref().map(|(u, _)| *u),
            req_id: self.request.as_ref().map(|(_, r)| r.as_str()),
            // The recorded answer is exactly what the write returns.
            snapshot: self.request.as_ref().map(|_| n),
            cut: n.version - self.max_events,
        }
    }

    pub(super) fn new(
        owner: Owner,
        base: &Session,
        next: Session,
        rules_version: i64,
        meta: WriteMeta<'_>,
        max_events: i64,
    ) -> Self {
        Self {
            owner,
            expected: base.version,
            changed: changes(base, &next),
            diff: crate::domain::diff(Some(base), &next),
            next,
            rules_version,
            action: meta.action,
            edge_id: meta.edge_id,
            node_id: meta.node_id,
            request: meta
                .request
                .map(|k| (k.user_id, k.request_id.as_str().to_owned())),
            max_events,
        }
    }
}

/// Runs `jobs` as one statement; the outcome of each, in order.
pub(super) async fn write_all<C: ConnectionTrait>(db: &C, jobs: Vec<Job>) -> Vec<Outcome> {
    match run(db, &jobs).await {
        Ok(written) => jobs
            .into_iter()
            .zip(written)
            .map(|(job, ok)| Ok(ok.then_some(job.next)))
            .collect(),
        Err(e) if jobs.len() == 1 => vec![Err(e)],
        // One bad row fails them all: each again alone, for its own answer.
        Err(_) => {
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(
                    run(db, std::slice::from_ref(&job))
                        .await
                        .map(|w| w[0].then_some(job.next)),
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
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, SQL, [rows.into()]);
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

/// Sizes of the batches written, for the metrics (set once by the application).
pub type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

/// The group-commit queue: writers queue their jobs; `workers` tasks each take
/// every job queued when they come free and write them in one statement.
#[derive(Clone)]
pub(super) struct Batcher {
    tx: mpsc::UnboundedSender<(Job, oneshot::Sender<Outcome>)>,
    observer: Arc<OnceLock<BatchObserver>>,
}

type Queue = Arc<Mutex<mpsc::UnboundedReceiver<(Job, oneshot::Sender<Outcome>)>>>;

impl Batcher {
    /// Starts `workers` writer tasks on `db`, taking at most `max_batch` jobs each time.
    pub(super) fn start(db: DatabaseConnection, workers: usize, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue: Queue = Arc::new(Mutex::new(rx));
        let observer: Arc<OnceLock<BatchObserver>> = Arc::default();
        for _ in 0..workers.max(1) {
            let worker = Worker {
                db: db.clone(),
                queue: queue.clone(),
                observer: observer.clone(),
                max_batch: max_batch.max(1),
                held: Vec::new(),
            };
            tokio::spawn(worker.run());
        }
        Self { tx, observer }
    }

    pub(super) fn observe(&self, observer: BatchObserver) {
        let _ = self.observer.set(observer);
    }

    /// Queues `job` and waits for its outcome.
    pub(super) async fn write(&self, job: Job) -> Outcome {
        let (done, outcome) = oneshot::channel();
        if self.tx.send((job, done)).is_err() {
            return Err(StoreError::Corrupt("the write queue is closed".into()));
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(StoreError::Corrupt("a writer task ended".into())))
    }
}

struct Worker {
    db: DatabaseConnection,
    queue: Queue,
    observer: Arc<OnceLock<BatchObserver>>,
    max_batch: usize,
    /// Jobs for a session already in the previous batch: they go in the next one, so
    /// a batch never holds two writes of one session (which would make one of them
    /// fail its guard although, alone, it would have followed the other).
    held: Vec<(Job, oneshot::Sender<Outcome>)>,
}

impl Worker {
    async fn run(mut self) {
        while let Some(batch) = self.next_batch().await {
            if let Some(observe) = self.observer.get() {
                observe(batch.len());
            }
            let (jobs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let outcomes = write_all(&self.db, jobs).await;
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // The caller may have gone (cancelled): the write stands regardless.
                let _ = reply.send(outcome);
            }
        }
    }

    /// Waits for one job (unless some are held), then takes what else is queued.
    async fn next_batch(&mut self) -> Option<Vec<(Job, oneshot::Sender<Outcome>)>> {
        let mut pending = std::mem::take(&mut self.held);
        let mut queue = self.queue.lock().await;
        if pending.is_empty() {
            pending.push(queue.recv().await?);
        }
        while pending.len() < self.max_batch {
            match queue.try_recv() {
                Ok(job) => pending.push(job),
                Err(_) => break,
            }
        }
        drop(queue);
        let mut batch: Vec<(Job, oneshot::Sender<Outcome>)> = Vec::with_capacity(pending.len());
        for job in pending {
            if batch.iter().any(|(b, _)| b.next.id == job.0.next.id) {
                self.held.push(job);
            } else {
                batch.push(job);
            }
        }
        // Rows locked in one order by every batch of every replica: no deadlocks.
        batch.sort_by_key(|(job, _)| job.next.id);
        Some(batch)
    }
}
