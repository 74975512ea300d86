//! The ONE mapping from use-case errors to gRPC statuses. Every status carries a
//! `google.rpc.ErrorInfo`; see `wire::status` for the encoding.

use std::collections::HashMap;

use tonic::{Code, Status};

use crate::{
    domain::DomainError,
    service::ServiceError,
    wire::status::{self as details, reason},
};

fn plain(code: Code, message: &str, reason: &str) -> Status {
    details::with_info(code, message, reason, HashMap::new(), Vec::new())
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(v) => details::invalid_argument(&v.field, &v.description),
            ServiceError::NotFound => plain(Code::NotFound, "session not found", reason::SESSION_NOT_FOUND),
            ServiceError::Conflict { current, expected } => details::conflict(&current, expected),
            ServiceError::RulesConflict { current, expected } => details::rules_conflict(&current, expected),
            ServiceError::Precondition { reason, message } => {
                plain(Code::FailedPrecondition, &message, reason)
            }
            ServiceError::RequestIdReused => {
                details::invalid_argument("request_id", "was already used for a different request")
            }
            ServiceError::NoOwner => details::invalid_argument(
                "x-user-id",
                "a new session needs an owner: an admin service must name the user in x-user-id",
            ),
            ServiceError::PermissionDenied(why) => {
                plain(Code::PermissionDenied, why, reason::PERMISSION_DENIED)
            }
            ServiceError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                plain(
                    Code::Unavailable,
                    "database unavailable; retry later",
                    reason::DATABASE_UNAVAILABLE,
                )
            }
            ServiceError::Unconfirmed => plain(
                Code::Unavailable,
                "the write is committed, but the shared cache did not confirm it in time; \
                 resend it with the same request_id for its answer",
                reason::WRITE_UNCONFIRMED,
            ),
            ServiceError::TimedOut => timed_out(),
            ServiceError::ShuttingDown => plain(
                Code::Unavailable,
                "server shutting down; reconnect",
                reason::SHUTTING_DOWN,
            ),
            ServiceError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                plain(Code::Internal, "internal error", reason::INTERNAL)
            }
        }
    }
}

impl From<DomainError> for Status {
    fn from(e: DomainError) -> Self {
        ServiceError::from(e).into()
    }
}

/// UNAUTHENTICATED without any detail that would help guessing.
pub fn unauthenticated() -> Status {
    unauthenticated_saying("missing or invalid credentials")
}

/// UNAUTHENTICATED with `message` (only where nothing is secret: auth mode "none").
pub fn unauthenticated_saying(message: &str) -> Status {
    plain(Code::Unauthenticated, message, reason::UNAUTHENTICATED)
}

/// DEADLINE_EXCEEDED for a request over `server.request_timeout_ms`.
pub fn timed_out() -> Status {
    plain(
        Code::DeadlineExceeded,
        "request timed out on the server",
        reason::TIMEOUT,
    )
}

/// RESOURCE_EXHAUSTED for load shedding and rate limits.
pub fn exhausted(message: &str, reason: &str) -> Status {
    plain(Code::ResourceExhausted, message, reason)
}

/// Gives an error status that tonic or hyper produced (a message over the size
/// limit, an undecodable request, an unknown method) the ErrorInfo every error of
/// this server carries. `headers` are a response's headers or trailers; a success,
/// or a status that already has details, is left alone.
pub fn ensure_error_info(headers: &mut http::HeaderMap) {
    // Cheap checks first: this runs on every response.
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32);
    let Some(code) = code.filter(|c| *c != Code::Ok) else {
        return;
    };
    if headers.contains_key("grpc-status-details-bin") {
        return;
    }
    // The message as sent (percent-decoded); if tonic reads the status differently
    // (a message that is not UTF-8), leave the original alone.
    let Some(parsed) = Status::from_header_map(headers).filter(|s| s.code() == code) else {
        return;
    };
    let reason = match code {
        Code::OutOfRange => reason::MESSAGE_TOO_LARGE,
        Code::Unimplemented => reason::UNIMPLEMENTED,
        Code::Internal => reason::INTERNAL,
        Code::NotFound => reason::NOT_FOUND,
        Code::Cancelled => reason::CANCELLED,
        _ => reason::TRANSPORT,
    };
    let detailed = plain(code, parsed.message(), reason);
    if detailed.add_header(headers).is_err() {
        tracing::debug!("could not add ErrorInfo to a transport status");
    }
}
