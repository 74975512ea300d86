//! Client errors and counters.

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
    /// A change to a field UpdateSession cannot carry (`id`, `current_node_id`, …):
    /// refused instead of silently left out.
    #[error("an update cannot change `{field}`{hint}")]
    Unsendable { field: &'static str, hint: &'static str },
    /// An optimistic mutation's deadline passed without an answer from the server.
    /// `kept`: it is still queued (and shown) and will be sent; otherwise it was
    /// dropped and rolled back.
    #[error("no answer from the server within the deadline; the mutation {}", if *.kept { "stays queued" } else { "was dropped" })]
    Deadline { kept: bool },
    /// The optimistic session's queue store failed.
    #[error("queue store: {0}")]
    Store(std::io::Error),
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
