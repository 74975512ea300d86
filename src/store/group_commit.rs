//! Group commit: guarded writes queue here; each of `workers` tasks takes every job
//! queued when it comes free (never waiting for company) and writes them in one
//! statement ([`pg_write`](super::pg_write)), then hands each caller its own outcome.

use std::sync::{Arc, OnceLock};

use sea_orm::DatabaseConnection;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{
    StoreError,
    job::Job,
    pg_write::{Outcome, write_all},
};

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
