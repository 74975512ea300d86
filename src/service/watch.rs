//! WatchSession: every committed version, on whichever replica it was written.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::mpsc,
    time::{Interval, MissedTickBehavior},
};
use tokio_stream::wrappers::ReceiverStream;

use super::{Caller, ServiceError, Sessions, ended};
use crate::{
    cache::Subscription,
    domain::{Session, SessionId},
    telemetry::Metrics,
};

/// The stream a watcher reads; ends with `Err` on deletion or shutdown.
pub type WatchStream = ReceiverStream<Result<Arc<Session>, ServiceError>>;

/// Keeps the open-streams gauge right however the watcher ends.
struct OpenStream(Arc<Metrics>);

impl OpenStream {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.watch_streams.inc();
        Self(metrics.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.watch_streams.dec();
    }
}

impl Sessions {
    /// Starts watching. Unknown sessions fail here, before the stream starts.
    #[tracing::instrument(
        skip(self, caller),
        fields(session_id = id.get(), user_id = caller.user_id, outcome)
    )]
    pub async fn watch(
        &self,
        caller: Caller,
        id: SessionId,
        since: i64,
    ) -> Result<WatchStream, ServiceError> {
        // Subscribe before reading, so no version committed in between is missed.
        let subscription = self.inner.cache.subscribe(id.get());
        let first = ended(self.get(&caller, id, None).await)?;
        let (tx, rx) = mpsc::channel(1);
        let every = self
            .inner
            .settings
            .watch_poll_interval
            .max(Duration::from_millis(10));
        let mut poll = tokio::time::interval(every);
        poll.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let watcher = Watcher {
            sessions: self.clone(),
            caller,
            id: id.get(),
            last: since,
            sub: subscription,
            tx,
            poll,
            was_degraded: false,
        };
        tokio::spawn(watcher.run(first));
        Ok(ReceiverStream::new(rx))
    }

    /// The session at `version` or newer: the cache if it is that fresh, else the
    /// database. `None` asks the database directly (polling).
    async fn read_at_least(
        &self,
        caller: &Caller,
        id: i64,
        version: Option<i64>,
    ) -> Result<Arc<Session>, ServiceError> {
        match version {
            Some(v) => self.at_least(caller, id, v).await,
            None => self.read_through(caller, id).await,
        }
    }
}

/// What woke a watcher up.
enum Wake {
    /// Read the session: at least this version (a notice), or from the database (a poll).
    Read(Option<i64>),
    /// Nothing to do (an old notice, or a poll while Redis is fine).
    Idle,
    /// The watcher left, or the server is stopping.
    Stop,
}

/// One open WatchSession stream.
struct Watcher {
    sessions: Sessions,
    caller: Caller,
    id: i64,
    /// The newest version sent (or `since_version`).
    last: i64,
    sub: Subscription,
    tx: mpsc::Sender<Result<Arc<Session>, ServiceError>>,
    poll: Interval,
    /// While Redis is down notices may be lost: the database is polled then, and
    /// once more after it recovers.
    was_degraded: bool,
}

impl Watcher {
    async fn run(mut self, first: Arc<Session>) {
        let _open = OpenStream::new(&self.sessions.inner.metrics);
        if !self.send_if_newer(first).await {
            return;
        }
        loop {
            let wanted = match self.wake().await {
                Wake::Read(wanted) => wanted,
                Wake::Idle => continue,
                Wake::Stop => return,
            };
            match self.sessions.read_at_least(&self.caller, self.id, wanted).await {
                Ok(s) => {
                    if !self.send_if_newer(s).await {
                        return;
                    }
                }
                Err(ServiceError::NotFound) => {
                    let _ = self.tx.send(Err(ServiceError::NotFound)).await;
                    return;
                }
                Err(error) => tracing::warn!(session_id = self.id, %error, "watch read failed; will retry"),
            }
        }
    }

    /// Sends `s` if it is newer than what was sent; false once the watcher is gone.
    async fn send_if_newer(&mut self, s: Arc<Session>) -> bool {
        if s.version <= self.last {
            return true;
        }
        self.last = s.version;
        self.tx.send(Ok(s)).await.is_ok()
    }

    async fn wake(&mut self) -> Wake {
        tokio::select! {
            changed = self.sub.receiver.changed() => {
                if changed.is_err() {
                    return Wake::Stop;
                }
                let notice = *self.sub.receiver.borrow_and_update();
                if notice.version <= self.last { Wake::Idle } else { Wake::Read(Some(notice.version)) }
            }
            _ = self.poll.tick() => {
                let degraded = !self.sessions.inner.cache.healthy();
                let poll_now = degraded || self.was_degraded;
                self.was_degraded = degraded;
                if poll_now { Wake::Read(None) } else { Wake::Idle }
            }
            _ = self.tx.closed() => Wake::Stop,
            _ = self.sessions.inner.shutdown.cancelled() => {
                let _ = self.tx.send(Err(ServiceError::ShuttingDown)).await;
                Wake::Stop
            }
        }
    }
}
