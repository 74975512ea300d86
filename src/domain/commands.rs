//! The writes a caller can ask for, parsed and ready for the service.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Advance, DomainError, JsonMap, NewSession, PageSize, PageToken, RequestId, Session, SessionId, SessionOp,
    SessionPatch, Version, WorldRules, ops::apply_all,
};

/// CreateSession, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub new: NewSession,
    pub request_id: Option<RequestId>,
}

/// ListSessions, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub page_size: PageSize,
    pub after: Option<PageToken>,
    pub world_id: Option<i64>,
}

/// ListSessionEvents, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsQuery {
    pub session_id: SessionId,
    pub page_size: PageSize,
    pub after: Option<PageToken>,
}

/// PutWorldRules, parsed: the validated rules of one world.
#[derive(Debug, Clone, PartialEq)]
pub struct PutRules {
    pub rules: WorldRules,
    /// Replace only if the stored rules are at this version (0: only if none are stored).
    pub expected: Option<i64>,
}

/// A versioned write of one session: the change plus its concurrency guard and idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub session_id: SessionId,
    /// Apply only if the session is still at this version (else ABORTED).
    pub expected: Option<Version>,
    pub request_id: Option<RequestId>,
    pub change: Change,
}

/// What a write does to the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// UpdateSession: replace the present fields.
    Patch(SessionPatch),
    /// AdvanceSession: follow an edge of the scene graph.
    Advance(Advance),
    /// MutateSession: typed operations, all or none.
    Ops(Vec<SessionOp>),
    /// Recompute relationship tiers after the world's rules changed.
    Renormalize,
    /// DeleteSession.
    Delete,
}

impl Change {
    /// The event `action` this change records.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Patch(_) => "update",
            Self::Advance(_) => "advance",
            Self::Ops(_) => "mutate",
            Self::Renormalize => "renormalize",
            Self::Delete => "delete",
        }
    }

    /// The session after the change (before normalization), computed on a copy.
    pub fn apply(&self, current: &Session) -> Result<Session, DomainError> {
        match self {
            // A patch replaces documents whole: copy only the ones it keeps.
            Self::Patch(patch) => Ok(patch.applied(current)),
            Self::Advance(advance) => {
                let mut next = current.clone();
                advance.apply_to(&mut next)?;
                Ok(next)
            }
            Self::Ops(ops) => apply_all(current, ops),
            Self::Renormalize | Self::Delete => Ok(current.clone()),
        }
    }

    /// The edge and node an advance records in its event.
    pub fn edge_and_node(&self) -> (Option<i64>, Option<i64>) {
        match self {
            Self::Advance(a) => (Some(a.edge_id), Some(a.to_node_id)),
            _ => (None, None),
        }
    }
}

/// One committed change of a session, as listed by ListSessionEvents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub id: i64,
    pub session_id: i64,
    /// The version this event produced.
    pub version: i64,
    pub action: String,
    pub edge_id: Option<i64>,
    pub node_id: Option<i64>,
    pub diff: JsonMap,
    pub created_at: DateTime<Utc>,
}
