//! Use cases: what each RPC does, independent of gRPC. Orchestrates the store (the
//! authority) and the cache (an accelerator whose failures are logged, never returned).

mod error;
mod fold;
mod read;
mod renormalize;
mod watch;
mod world;
mod write;

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use error::ServiceError;

use crate::{
    cache::SessionCache,
    domain::JsonLimits,
    store::{Owner, Store},
    telemetry::Metrics,
};

/// Who is calling, as established by the auth layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    /// May act on any session and change world rules.
    pub admin: bool,
}

impl Caller {
    /// The `user_id` of a caller acting for no user: an admin service, or the
    /// server itself. User ids are positive.
    pub const NO_USER: i64 = 0;

    pub fn owner(&self) -> Owner {
        if self.admin {
            Owner::Any
        } else {
            Owner::User(self.user_id)
        }
    }

    fn may_see(&self, user_id: i64) -> bool {
        self.admin || self.user_id == user_id
    }
}

/// Tunables of the use cases, filled from the configuration (`sessions.*`; the
/// defaults live in [`crate::config`]).
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub json_limits: JsonLimits,
    /// How long idempotency records are kept.
    pub request_id_ttl: Duration,
    /// How often watchers poll the database while Redis is unreachable.
    pub watch_poll_interval: Duration,
    /// Sessions re-normalized per batch after world rules change.
    pub renormalize_batch: u64,
    /// How often a sweep looks for sessions normalized with old rules (also at start).
    pub renormalize_sweep: Duration,
    /// Most queued writes of one session written as one chain (see `fold.rs`).
    pub max_folded_writes: usize,
}

/// The session use cases; cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    cache: Arc<dyn SessionCache>,
    metrics: Arc<Metrics>,
    settings: ServiceSettings,
    /// Wakes the re-normalizer after world rules change.
    rules_changed: Notify,
    /// Cancelled at shutdown: ends watch streams and background tasks.
    shutdown: CancellationToken,
    /// Writers without an expected version queue here per session, so on one
    /// replica they take turns (folded into one statement) instead of conflicting.
    queues: fold::Queues,
}

/// Records how a use case ended in the `outcome` field of its span, and passes the
/// result on: every use-case span carries the outcome, and the caller's `user_id`
/// and the session where the use case has them.
fn ended<T>(result: Result<T, ServiceError>) -> Result<T, ServiceError> {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.outcome(),
    };
    tracing::Span::current().record("outcome", outcome);
    result
}

/// Compare-and-set rounds a write without an expected version tries (alone, or
/// folded with others) before it falls back: alone to the row lock, a chain to its
/// writes one at a time.
const OPTIMISTIC_ROUNDS: usize = 4;

impl Sessions {
    pub fn new(
        store: Store,
        cache: Arc<dyn SessionCache>,
        metrics: Arc<Metrics>,
        settings: ServiceSettings,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                cache,
                metrics,
                settings,
                rules_changed: Notify::new(),
                shutdown,
                queues: fold::Queues::default(),
            }),
        }
    }

    /// Starts the background work: pruning idempotency records and re-normalizing
    /// sessions after world-rules changes. Both stop at shutdown.
    pub fn spawn_background(&self) {
        tokio::spawn(self.clone().prune_requests_forever());
        tokio::spawn(self.clone().renormalize_forever());
    }

    async fn prune_requests_forever(self) {
        let ttl = self.inner.settings.request_id_ttl;
        let every = (ttl / 24).clamp(Duration::from_secs(1), Duration::from_secs(600));
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
            let cutoff = chrono::Utc::now() - ttl;
            match self.inner.store.prune_requests(cutoff).await {
                Ok(0) => {}
                Ok(pruned) => tracing::debug!(pruned, "pruned idempotency records"),
                Err(error) => tracing::warn!(%error, "pruning idempotency records failed"),
            }
        }
    }
}
