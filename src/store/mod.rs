//! Persistence: the only code that knows SQL and sea-orm.
//!
//! Every write is one transaction whose version check is a single conditional
//! `UPDATE … WHERE id = ? AND version = ? RETURNING *` (or `DELETE … RETURNING *`).
//! The event row and the idempotency record commit in the same transaction.

mod connect;
mod convert;
pub(crate) mod entity;
mod error;
mod events;
mod group_commit;
mod job;
pub(crate) mod migrate;
mod pg_write;
mod requests;
mod sessions;
mod world;
mod write;

use sea_orm::DatabaseConnection;

pub use connect::StoreSettings;
pub use error::StoreError;
pub use group_commit::BatchObserver;
pub use job::Link;
pub use requests::{RequestKey, RequestRecord, WriteMeta};
pub use write::{Cas, Written};

/// Whose sessions a query may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Only this user's sessions; others' look absent.
    User(i64),
    /// Any session (admin).
    Any,
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    reader: DatabaseConnection,
    /// On SQLite a pool of one connection, so writers never race for the file lock
    /// (a deferred transaction that must upgrade a read lock fails at once with
    /// "database is locked"). On PostgreSQL the same pool as `reader`.
    writer: DatabaseConnection,
    max_events: i64,
    /// PostgreSQL's group-commit queue for guarded writes (`None` on SQLite, whose
    /// single writer connection already serializes them).
    batcher: Option<group_commit::Batcher>,
}

impl Store {
    /// A write transaction. On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken
    /// up front (waiting out the busy timeout if another process holds it) instead of
    /// failing at once when a read transaction tries to upgrade.
    async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
        use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        self.writer.begin_with_options(options).await
    }

    /// Reports the size of every group-commit batch (PostgreSQL) to `observer`.
    pub fn observe_batches(&self, observer: BatchObserver) {
        if let Some(b) = &self.batcher {
            b.observe(observer);
        }
    }

    /// True on PostgreSQL (row locks available), false on SQLite.
    fn is_postgres(&self) -> bool {
        self.writer.get_database_backend() == sea_orm::DbBackend::Postgres
    }

    /// The `db.system` of spans (OpenTelemetry's names).
    fn system(&self) -> &'static str {
        if self.is_postgres() {
            "postgresql"
        } else {
            "sqlite"
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.writer.ping().await.map_err(StoreError::from)?;
        if !self.is_postgres() {
            self.reader.ping().await.map_err(StoreError::from)?;
        }
        Ok(())
    }

    /// Connections in use and idle, for the metrics.
    pub fn pool_stats(&self) -> (u32, u32) {
        let mut in_use = 0;
        let mut idle = 0;
        let pools: &[&DatabaseConnection] = if self.is_postgres() {
            &[&self.writer]
        } else {
            &[&self.reader, &self.writer]
        };
        for db in pools {
            let (size, free) = connect::pool_size(db);
            in_use += size.saturating_sub(free);
            idle += free;
        }
        (in_use, idle)
    }

    /// Closes the pools, waiting for connections to return.
    pub async fn close(&self) {
        let _ = self.writer.close_by_ref().await;
        let _ = self.reader.close_by_ref().await;
    }
}
