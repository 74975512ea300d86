//! WatchSession: every committed version, on whichever replica it was written.

use std::{sync::Arc, time::Duration};

use tokio::{sync::mpsc, time::MissedTickBehavior};
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
        tokio::spawn(self.clone().watch_loop(caller, first, since, subscription, tx));
        Ok(ReceiverStream::new(rx))
    }

    async fn watch_loop(
        self,
        caller: Caller,
        first: Arc<Session>,
        since: i64,
        mut sub: Subscription,
        tx: mpsc::Sender<Result<Arc<Session>, ServiceError>>,
    ) {
        let _open = OpenStream::new(&self.inner.metrics);
        let id = first.id;
        let mut last = since;
        if first.version > last {
            last = first.version;
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
        }
        let mut poll = tokio::time::interval(
            self.inner
                .settings
                .watch_poll_interval
                .max(Duration::from_millis(10)),
        );
        poll.set_missed_tick_behavior(MissedTickBehavior::Skip);
        // While Redis is down notices may be lost: poll the database, once more after it recovers.
        let mut was_degraded = false;
        loop {
            let wanted = tokio::select! {
                changed = sub.receiver.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let notice = *sub.receiver.borrow_and_update();
                    if notice.version <= last {
                        continue;
                    }
                    Some(notice.version)
                }
                _ = poll.tick() => {
                    let degraded = !self.inner.cache.healthy();
                    let poll_now = degraded || was_degraded;
                    was_degraded = degraded;
                    if !poll_now {
                        continue;
                    }
                    None
                }
                _ = tx.closed() => return,
                _ = self.inner.shutdown.cancelled() => {
                    let _ = tx.send(Err(ServiceError::ShuttingDown)).await;
                    return;
                }
            };
            match self.read_at_least(&caller, id, wanted).await {
                Ok(s) if s.version > last => {
                    last = s.version;
                    if tx.send(Ok(s)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(ServiceError::NotFound) => {
                    let _ = tx.send(Err(ServiceError::NotFound)).await;
                    return;
                }
                Err(error) => tracing::warn!(session_id = id, %error, "watch read failed; will retry"),
            }
        }
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
