//! Storage errors: distinct variants, classified once from sea-orm's `DbErr`.

use std::ops::Deref;

use sea_orm::{DbErr, RuntimeErr, SqlErr};

use crate::domain::{DomainError, Session, WorldRules};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session not found")]
    NotFound,
    /// The guarded version did not match; holds the current row.
    #[error("version conflict: session is at version {}", .0.version)]
    Conflict(Box<Session>),
    /// World rules were not at the expected version; holds the current rules.
    #[error("version conflict: world rules are at version {}", .0.version)]
    RulesConflict(Box<WorldRules>),
    /// A rule refused the change computed inside the transaction.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The (caller, request_id) pair is already recorded: the write was rolled back.
    #[error("request id already recorded")]
    DuplicateRequest,
    /// The database cannot be reached or is shutting down: retrying later may work.
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    /// A write waited for a row lock past PostgreSQL's `lock_timeout` (set below the
    /// request timeout): it was not applied.
    #[error("timed out waiting for a row lock: {0}")]
    LockTimeout(DbErr),
    #[error("database error: {0}")]
    Db(DbErr),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        if is_lock_timeout(&e) {
            Self::LockTimeout(e)
        } else if is_unavailable(&e) {
            Self::Unavailable(e)
        } else {
            Self::Db(e)
        }
    }
}

/// True when `e` is a violation of a unique index (a duplicate request id).
pub(crate) fn is_unique_violation(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// The driver's error under sea-orm's, for the checks below.
fn sqlx_error(e: &DbErr) -> Option<&sea_orm::sqlx::Error> {
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(s)) | DbErr::Query(RuntimeErr::SqlxError(s)) => Some(s.deref()),
        _ => None,
    }
}

/// PostgreSQL's 55P03 lock_not_available: `lock_timeout` passed.
fn is_lock_timeout(e: &DbErr) -> bool {
    matches!(sqlx_error(e), Some(sea_orm::sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03"))
}

/// Connection-level failures, pool timeouts and server shutdowns: the caller may retry.
fn is_unavailable(e: &DbErr) -> bool {
    if matches!(e, DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) {
        return true;
    }
    use sea_orm::sqlx::Error as X;
    match sqlx_error(e) {
        Some(X::Io(_) | X::Tls(_) | X::PoolTimedOut | X::PoolClosed | X::WorkerCrashed) => true,
        Some(X::Protocol(_)) => true,
        Some(X::Database(db)) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: 08xxx connection exceptions, 57P0x shutdown / cannot connect,
            // 53xxx insufficient resources. SQLite: 5 busy, 6 locked.
            code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || code == "5"
                || code == "6"
        }
        _ => false,
    }
}
