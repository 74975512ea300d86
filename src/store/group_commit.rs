//! Group commit: guarded writes queue here; one dispatcher starts a statement
//! ([`pg_write`](super::pg_write)) with every job queued whenever it may (never
//! waiting for company) and hands each caller its own outcome.
//!
//! When may it? When nothing is in flight; or, while fewer than `workers`
//! statements are, once `overlap_batch` jobs are waiting. A statement spends part of
//! its time in PostgreSQL's commit (the WAL flush), when that backend needs no CPU: a
//! second statement started then uses it. Started at once instead (`overlap_batch`
//! 1), each statement carries fewer writes, and a statement's fixed cost is most of
//! its cost (BENCHMARKS.md, rounds four and nine).

use std::{
    collections::{HashSet, VecDeque},
    sync::{Arc, OnceLock},
};

use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use super::{
    StoreError,
    job::Job,
    pg_write::{Outcome, write_all},
};

/// Sizes of the batches written, for the metrics (set once by the application).
pub type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

type Entry = (Job, oneshot::Sender<Outcome>);

/// How the dispatcher starts statements.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Statements in flight at most.
    pub workers: usize,
    /// Writes in one statement at most.
    pub max_batch: usize,
    /// Writes waiting before a statement starts beside one in flight.
    pub overlap_batch: usize,
}

/// The group-commit queue: writers queue their jobs; the dispatcher writes them.
#[derive(Clone)]
pub(super) struct Batcher {
    tx: mpsc::UnboundedSender<Entry>,
    observer: Arc<OnceLock<BatchObserver>>,
}

impl Batcher {
    /// Starts the dispatcher on `db`.
    pub(super) fn start(db: DatabaseConnection, limits: Limits) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let observer: Arc<OnceLock<BatchObserver>> = Arc::default();
        let dispatcher = Dispatcher {
            db,
            rx,
            observer: observer.clone(),
            limits: Limits {
                workers: limits.workers.max(1),
                max_batch: limits.max_batch.max(1),
                overlap_batch: limits.overlap_batch.max(1),
            },
            pending: VecDeque::new(),
            busy: HashSet::new(),
        };
        tokio::spawn(dispatcher.run());
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
            .unwrap_or_else(|_| Err(StoreError::Corrupt("the write dispatcher ended".into())))
    }
}

struct Dispatcher {
    db: DatabaseConnection,
    rx: mpsc::UnboundedReceiver<Entry>,
    observer: Arc<OnceLock<BatchObserver>>,
    limits: Limits,
    /// Queued jobs, oldest first.
    pending: VecDeque<Entry>,
    /// Sessions with a write in flight: their next writes wait for its outcome, so a
    /// statement never holds two writes of one session, nor one of a session another
    /// statement is writing (either would fail a guard that, alone, it would have met).
    busy: HashSet<i64>,
}

impl Dispatcher {
    async fn run(mut self) {
        // Each statement in flight resolves to the sessions it wrote.
        let mut in_flight: FuturesUnordered<BoxFuture<'static, Vec<i64>>> = FuturesUnordered::new();
        let mut open = true;
        loop {
            while let Ok(entry) = self.rx.try_recv() {
                self.pending.push_back(entry);
            }
            if self.may_start(in_flight.len()) {
                // Writers already runnable (woken by the same read of a socket) queue
                // first: one pass of the scheduler, never a timer (see cache/groups.rs).
                tokio::task::yield_now().await;
                while let Ok(entry) = self.rx.try_recv() {
                    self.pending.push_back(entry);
                }
            }
            while self.may_start(in_flight.len()) {
                let batch = self.take_batch();
                if batch.is_empty() {
                    break; // every pending job waits for a session in flight
                }
                in_flight.push(Box::pin(write(self.db.clone(), batch, self.observer.clone())));
            }
            if !open && in_flight.is_empty() {
                return; // the queue is closed; whatever is left pending has no writer
            }
            tokio::select! {
                entry = self.rx.recv(), if open => match entry {
                    Some(entry) => self.pending.push_back(entry),
                    None => open = false,
                },
                Some(written) = in_flight.next(), if !in_flight.is_empty() => {
                    for id in written {
                        self.busy.remove(&id);
                    }
                }
            }
        }
    }

    fn may_start(&self, in_flight: usize) -> bool {
        let waiting = self.pending.len();
        waiting > 0
            && (in_flight == 0 || (in_flight < self.limits.workers && waiting >= self.limits.overlap_batch))
    }

    /// Up to `max_batch` pending jobs of distinct sessions not in flight, in the
    /// order rows are locked; marks their sessions busy.
    fn take_batch(&mut self) -> Vec<Entry> {
        let mut batch: Vec<Entry> = Vec::new();
        let mut left = VecDeque::with_capacity(self.pending.len());
        while let Some(entry) = self.pending.pop_front() {
            if batch.len() < self.limits.max_batch && self.busy.insert(entry.0.next.id) {
                batch.push(entry);
            } else {
                left.push_back(entry);
            }
        }
        self.pending = left;
        // Rows locked in one order by every batch of every replica: no deadlocks.
        batch.sort_by_key(|(job, _)| job.next.id);
        batch
    }
}

/// Writes one batch and answers each caller; resolves to the sessions written.
async fn write(
    db: DatabaseConnection,
    batch: Vec<Entry>,
    observer: Arc<OnceLock<BatchObserver>>,
) -> Vec<i64> {
    if let Some(observe) = observer.get() {
        observe(batch.len());
    }
    let ids = batch.iter().map(|(job, _)| job.next.id).collect();
    let (jobs, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let outcomes = write_all(&db, jobs).await;
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // The caller may have gone (cancelled): the write stands regardless.
        let _ = reply.send(outcome);
    }
    ids
}
