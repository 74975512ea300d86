//! Rich error details (AIP-193): every error carries a `google.rpc.ErrorInfo`; a
//! version conflict also carries the current session packed as `Any`.
//!
//! Encoding lives here, not in the server edge, so the client decodes exactly what
//! the server encodes.

use std::collections::HashMap;

use prost::Message;
use prost_types::Any;
use tonic::{Code, Status};
use tonic_types::pb::{BadRequest, ErrorInfo, Status as RpcStatus, bad_request};

use super::pb;
use crate::domain::{Session, WorldRules};

/// The `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "session.pixsim7";

/// `ErrorInfo.reason` values.
pub mod reason {
    pub const VERSION_CONFLICT: &str = "VERSION_CONFLICT";
    pub const SESSION_NOT_FOUND: &str = "SESSION_NOT_FOUND";
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
    pub const DATABASE_UNAVAILABLE: &str = "DATABASE_UNAVAILABLE";
    /// A write committed whose new state the shared cache did not confirm in time:
    /// resend it with the same request id for its answer.
    pub const WRITE_UNCONFIRMED: &str = "WRITE_UNCONFIRMED";
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const OVERLOADED: &str = "OVERLOADED";
    pub const TIMEOUT: &str = "TIMEOUT";
    pub const SHUTTING_DOWN: &str = "SHUTTING_DOWN";
    pub const INTERNAL: &str = "INTERNAL";
    /// A request or response over `server.max_message_bytes` (tonic's OUT_OF_RANGE).
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
    /// No such method on this server.
    pub const UNIMPLEMENTED: &str = "UNIMPLEMENTED";
    /// Health: a service name this server does not know.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// The call was cancelled before it finished.
    pub const CANCELLED: &str = "CANCELLED";
    /// Any other status the gRPC transport produced itself.
    pub const TRANSPORT: &str = "TRANSPORT";
}

/// A status whose details hold ErrorInfo plus `extra` details. The inner
/// google.rpc.Status repeats the outer code and message, as grpcurl expects.
pub fn with_info(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    metadata: HashMap<String, String>,
    extra: Vec<Any>,
) -> Status {
    let message = message.into();
    let info = ErrorInfo {
        reason: reason.into(),
        domain: ERROR_DOMAIN.into(),
        metadata,
    };
    let mut details = vec![Any {
        type_url: tonic_types::ErrorInfo::TYPE_URL.into(),
        value: info.encode_to_vec(),
    }];
    details.extend(extra);
    let rpc = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details,
    };
    Status::with_details(code, message, rpc.encode_to_vec().into())
}

/// INVALID_ARGUMENT with a BadRequest violation naming the field.
pub fn invalid_argument(field: &str, description: &str) -> Status {
    let bad = BadRequest {
        field_violations: vec![bad_request::FieldViolation {
            field: field.into(),
            description: description.into(),
            ..Default::default()
        }],
    };
    let any = Any {
        type_url: tonic_types::BadRequest::TYPE_URL.into(),
        value: bad.encode_to_vec(),
    };
    let meta = HashMap::from([("field".to_string(), field.to_string())]);
    with_info(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        reason::INVALID_ARGUMENT,
        meta,
        vec![any],
    )
}

fn versions(expected: i64, current: i64) -> HashMap<String, String> {
    HashMap::from([
        ("expected_version".to_string(), expected.to_string()),
        ("current_version".to_string(), current.to_string()),
    ])
}

/// ABORTED for a version conflict, with the current session in the details.
pub fn conflict(current: &Session, expected: i64) -> Status {
    let session = Any::from_msg(&pb::GameSession::from(current)).expect("encoding into a Vec cannot fail");
    with_info(
        Code::Aborted,
        format!(
            "session {} is at version {}, not {expected}",
            current.id, current.version
        ),
        reason::VERSION_CONFLICT,
        versions(expected, current.version),
        vec![session],
    )
}

/// ABORTED for a world-rules conflict, with the current rules in the details.
pub fn rules_conflict(current: &WorldRules, expected: i64) -> Status {
    let rules = Any::from_msg(&pb::WorldRules::from(current)).expect("encoding into a Vec cannot fail");
    with_info(
        Code::Aborted,
        format!(
            "world {} rules are at version {}, not {expected}",
            current.world_id, current.version
        ),
        reason::VERSION_CONFLICT,
        versions(expected, current.version),
        vec![rules],
    )
}

/// The decoded `google.rpc.Status` details of a status, if any.
pub fn rpc_status(status: &Status) -> Option<RpcStatus> {
    if status.details().is_empty() {
        return None;
    }
    RpcStatus::decode(status.details()).ok()
}

/// The ErrorInfo of a status, if it carries one.
pub fn error_info(status: &Status) -> Option<ErrorInfo> {
    rpc_status(status)?
        .details
        .iter()
        .find(|a| a.type_url == tonic_types::ErrorInfo::TYPE_URL)
        .and_then(|a| ErrorInfo::decode(a.value.as_slice()).ok())
}

/// The current session carried by an ABORTED version conflict.
pub fn conflict_session(status: &Status) -> Option<Session> {
    if status.code() != Code::Aborted {
        return None;
    }
    rpc_status(status)?
        .details
        .iter()
        .find_map(|a| a.to_msg::<pb::GameSession>().ok())
        .and_then(|g| Session::try_from(g).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            id: 9,
            user_id: 1,
            scene_id: 2,
            current_node_id: 3,
            world_id: Some(4),
            flags: serde_json::json!({"a": 1}).as_object().unwrap().clone(),
            world_time: 1.5,
            version: 2,
            ..crate::domain::sample_session()
        }
    }

    #[test]
    fn a_conflict_carries_error_info_and_the_current_session() {
        let status = conflict(&session(), 1);
        assert_eq!(status.code(), Code::Aborted);
        let rpc = rpc_status(&status).unwrap();
        assert_eq!(rpc.code, Code::Aborted as i32);
        assert_eq!(rpc.message, status.message());
        assert_eq!(
            rpc.details[1].type_url,
            "type.googleapis.com/pixsim.session.v1.GameSession"
        );
        let info = error_info(&status).unwrap();
        assert_eq!(info.reason, "VERSION_CONFLICT");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata["expected_version"], "1");
        assert_eq!(info.metadata["current_version"], "2");
        assert_eq!(conflict_session(&status).unwrap(), session());
    }

    #[test]
    fn invalid_argument_names_the_field_in_a_bad_request() {
        let status = invalid_argument("session_id", "must be a positive integer");
        let rpc = rpc_status(&status).unwrap();
        let bad = rpc
            .details
            .iter()
            .find(|a| a.type_url == tonic_types::BadRequest::TYPE_URL)
            .map(|a| BadRequest::decode(a.value.as_slice()).unwrap())
            .unwrap();
        assert_eq!(bad.field_violations[0].field, "session_id");
        assert!(conflict_session(&status).is_none());
    }
}
