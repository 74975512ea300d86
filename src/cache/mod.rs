//! The read cache and live-update fan-out: the only code that knows Redis.
//!
//! Redis is an accelerator, never a dependency: every method here swallows (logs and
//! counts) its failures, and callers fall back to the database.

mod groups;
mod hub;
pub mod layout;
mod local;
mod lookups;
mod recent;
mod redis;
mod write_through;

use std::sync::Arc;

use async_trait::async_trait;

pub use hub::{Hub, Notice, Subscription};
pub(crate) use local::LocalCache;
pub(crate) use recent::Recent;
pub use redis::{RedisCache, RedisSettings};

use crate::domain::Session;

/// What the cache knows about a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Hit(Arc<Session>),
    /// Deleted recently (a tombstone): no need to ask the database.
    Deleted,
    /// Not cached, or the cache could not answer in time.
    Miss,
}

/// Whether a committed write may be answered: strong reads on every replica will
/// find it (or something newer), or they might not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// In the shared cache, or there is none to serve an older entry: a Redis that
    /// dropped its connections comes back empty or distrusted (see `redis.rs`).
    Visible,
    /// Redis stayed connected but never confirmed the write-through: another replica
    /// could still read the older entry there. The write is committed; its answer
    /// waits for a resend with the same request id.
    Unconfirmed,
}

/// A version-guarded session cache plus cross-replica update notices.
#[async_trait]
pub trait SessionCache: Send + Sync + 'static {
    /// Looks a session up; never fails (a cache error is a miss, counted as a bypass).
    async fn get(&self, id: i64) -> Lookup;

    /// Stores `session` unless the cache already holds the same or a newer version,
    /// or a tombstone. Every fill — read-through and write-through — goes through here.
    async fn fill(&self, session: &Arc<Session>);

    /// This replica's own copy of a session: the newest version it has seen, unless a
    /// notice since said a newer one exists. It may lag a write acknowledged by another
    /// replica, so only answers that name a version may use it (a guarded write's base
    /// at exactly `expected_version`, a read with `min_version`). Never fails, never waits.
    fn recent(&self, id: i64) -> Option<Arc<Session>>;

    /// Makes a just-committed `session` this replica's copy at once, before
    /// [`committed`](Self::committed) tells the shared cache and the other replicas.
    fn remember(&self, session: &Arc<Session>);

    /// Replaces the entry with a short-lived tombstone, so a racing fill of an
    /// older read cannot resurrect a deleted session.
    async fn tombstone(&self, id: i64);

    /// Tells watchers on every replica that the session changed.
    async fn publish(&self, notice: Notice);

    /// After a committed write: write through, then tell watchers everywhere.
    async fn committed(&self, session: &Arc<Session>) -> Published {
        self.fill(session).await;
        self.publish(Notice::updated(session.id, session.version)).await;
        Published::Visible
    }

    /// An answer from the idempotency record acknowledges `session`, which may be
    /// old: its first attempt may have committed and been cut off before its
    /// write-through. Written through and confirmed like a commit, never over a newer
    /// version, nor under one that was cached and has expired.
    async fn replayed(&self, session: &Arc<Session>) -> Published;

    /// After a committed delete: tombstone, then tell watchers everywhere.
    async fn deleted(&self, id: i64) -> Published {
        self.tombstone(id).await;
        self.publish(Notice::deleted(id)).await;
        Published::Visible
    }

    /// Notices for one session, newest wins.
    fn subscribe(&self, id: i64) -> Subscription;

    /// False while the shared cache is unreachable (watchers then poll the database).
    fn healthy(&self) -> bool;
}
