//! Use-case errors: what the edge turns into status codes, in one place.

use crate::{
    domain::{DomainError, FieldViolation, Session, WorldRules},
    store::StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid argument: {0}")]
    Invalid(FieldViolation),
    /// Unknown, or owned by someone else (never revealed).
    #[error("session not found")]
    NotFound,
    #[error("version conflict: expected {expected}, session is at {}", .current.version)]
    Conflict { current: Box<Session>, expected: i64 },
    #[error("version conflict: expected {expected}, world rules are at {}", .current.version)]
    RulesConflict { current: Box<WorldRules>, expected: i64 },
    #[error("{reason}: {message}")]
    Precondition { reason: &'static str, message: String },
    #[error("request_id was already used for a different request")]
    RequestIdReused,
    /// A caller acting for no user (an admin service) created a session without naming its owner.
    #[error("a new session needs an owner")]
    NoOwner,
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A write committed, but Redis (connected, silent) never confirmed its new state:
    /// other replicas could still read the older one, so it is not answered yet.
    #[error("the write is committed, but the shared cache did not confirm it in time")]
    Unconfirmed,
    /// A write waited for a row lock for most of the request timeout, and was not applied.
    #[error("timed out waiting for the session's row lock")]
    TimedOut,
    /// The server is shutting down (ends watch streams).
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// A short label for spans and logs: how the use case ended.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Invalid(_) | Self::NoOwner => "invalid",
            Self::NotFound => "not_found",
            Self::Conflict { .. } | Self::RulesConflict { .. } => "conflict",
            Self::Precondition { .. } => "precondition",
            Self::RequestIdReused => "request_id_reused",
            Self::PermissionDenied(_) => "denied",
            Self::Unavailable(_) | Self::Unconfirmed | Self::ShuttingDown => "unavailable",
            Self::TimedOut => "timeout",
            Self::Internal(_) => "error",
        }
    }

    /// Errors a retried write can produce after its first attempt committed: worth
    /// checking the idempotency record before answering.
    pub(crate) fn may_be_replay(&self) -> bool {
        matches!(
            self,
            Self::Conflict { .. } | Self::NotFound | Self::Precondition { .. } | Self::RequestIdReused
        )
    }
}

impl From<DomainError> for ServiceError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(v) => Self::Invalid(v),
            DomainError::Precondition { reason, message } => Self::Precondition { reason, message },
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            // Callers with an expected version map conflicts themselves (they know it).
            StoreError::Conflict(current) => {
                let expected = current.version;
                Self::Conflict { current, expected }
            }
            StoreError::RulesConflict(current) => {
                let expected = current.version;
                Self::RulesConflict { current, expected }
            }
            StoreError::Domain(d) => d.into(),
            // The write was rolled back because its request id is recorded: the
            // caller checks the record (see `may_be_replay`).
            StoreError::DuplicateRequest => Self::RequestIdReused,
            StoreError::Unavailable(db) => Self::Unavailable(db.to_string()),
            StoreError::LockTimeout(_) => Self::TimedOut,
            StoreError::Db(db) => Self::Internal(db.to_string()),
            StoreError::Corrupt(msg) => Self::Internal(msg),
        }
    }
}
