//! Client errors and counters.

use std::sync::atomic::{AtomicU64, Ordering};

use tonic::{Code, Status};

use crate::domain::{DomainError, Session};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused, and retrying would not help (NOT_FOUND, INVALID_ARGUMENT, …).
    #[error("server refused: {}: {}", .0.code(), .0.message())]
    Status(Status),
    /// Conflicts or outages outlasted the retry policy. Carries the last session the
    /// server reported, if any, so the caller can show or merge it.
    #[error("gave up after {attempts} attempts: {}: {}", .status.code(), .status.message())]
    Exhausted {
        attempts: u32,
        last: Option<Box<Session>>,
        status: Status,
    },
    /// The mutation cannot be applied to the session (locally, before sending).
    #[error("mutation refused: {0}")]
    Mutation(#[from] DomainError),
    /// Could not connect.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The offline queue of an optimistic session is full.
    #[error("too many pending mutations")]
    QueueFull,
    /// The optimistic session was dropped.
    #[error("the session handle is closed")]
    Closed,
}

impl ClientError {
    /// The gRPC code behind this error, if there is one.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Status(s) | Self::Exhausted { status: s, .. } => Some(s.code()),
            _ => None,
        }
    }

    /// True for failures that say the server could not be reached (not a refusal).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Exhausted { status, .. } | Self::Status(status) => is_transient(status),
            _ => false,
        }
    }
}

/// UNAVAILABLE and DEADLINE_EXCEEDED, and a connection that broke under the call
/// (tonic reports those as CANCELLED or UNKNOWN with the transport error as source;
/// a status the server sent has no source): the request may not have arrived, or
/// its answer was lost. Resending the same request with the same request id is safe.
pub(crate) fn is_transient(status: &tonic::Status) -> bool {
    use std::error::Error;
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded => true,
        Code::Cancelled | Code::Unknown => status.source().is_some(),
        _ => false,
    }
}

/// What the retry loop has had to do, since the client was made.
#[derive(Debug, Default)]
pub struct ClientStats {
    conflicts: AtomicU64,
    retries: AtomicU64,
    exhaustions: AtomicU64,
}

/// A snapshot of [`ClientStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// ABORTED answers (benign: the change was re-applied on the current state).
    pub conflicts: u64,
    /// Attempts after the first, for any reason.
    pub retries: u64,
    /// Calls that ran out of retries.
    pub exhaustions: u64,
}

impl ClientStats {
    pub(crate) fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn exhausted(&self) {
        self.exhaustions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            conflicts: self.conflicts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            exhaustions: self.exhaustions.load(Ordering::Relaxed),
        }
    }
}
