//! Requests → domain commands. Bad input stops here with the offending field named.

use super::{json::struct_to_json, pb};
use crate::domain::{
    Advance, Change, CreateRequest, DomainError, EventsQuery, ListQuery, NewSession, PageSize, PageToken,
    RequestId, SessionId, SessionOp, SessionPatch, Version, WorldTime, Write,
};

fn expected(raw: Option<i64>) -> Result<Option<Version>, DomainError> {
    raw.map(|v| Version::parse(v, "expected_version")).transpose()
}

fn session_id(raw: i64) -> Result<SessionId, DomainError> {
    SessionId::parse(raw, "session_id")
}

impl TryFrom<pb::CreateSessionRequest> for CreateRequest {
    type Error = DomainError;

    fn try_from(r: pb::CreateSessionRequest) -> Result<Self, Self::Error> {
        let mut new = NewSession::parse(r.scene_id, r.entry_node_id, r.world_id, r.world_time)?;
        if let Some(flags) = r.flags {
            new.flags = struct_to_json(flags, "flags")?;
        }
        if let Some(rel) = r.relationships {
            new.relationships = struct_to_json(rel, "relationships")?;
        }
        Ok(Self {
            new,
            request_id: RequestId::parse(&r.request_id)?,
        })
    }
}

impl pb::GetSessionRequest {
    /// A strong read: never older than any acknowledged write.
    pub fn strong(session_id: i64) -> Self {
        Self {
            session_id,
            min_version: None,
        }
    }

    /// A read of any state at `min_version` or newer (a replica's own copy will do).
    pub fn at_least(session_id: i64, min_version: i64) -> Self {
        Self {
            session_id,
            min_version: Some(min_version),
        }
    }
}

/// GetSession: the session and, for a read that may use a replica's own copy, the
/// oldest version that will do.
impl TryFrom<pb::GetSessionRequest> for (SessionId, Option<Version>) {
    type Error = DomainError;

    fn try_from(r: pb::GetSessionRequest) -> Result<Self, Self::Error> {
        let min_version = r
            .min_version
            .map(|v| Version::parse(v, "min_version"))
            .transpose()?;
        Ok((session_id(r.session_id)?, min_version))
    }
}

impl TryFrom<pb::ListSessionsRequest> for ListQuery {
    type Error = DomainError;

    fn try_from(r: pb::ListSessionsRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            page_size: PageSize::parse(r.page_size)?,
            after: PageToken::parse(&r.page_token, "sessions")?,
            world_id: r.world_id,
        })
    }
}

impl TryFrom<pb::ListSessionEventsRequest> for EventsQuery {
    type Error = DomainError;

    fn try_from(r: pb::ListSessionEventsRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            session_id: session_id(r.session_id)?,
            page_size: PageSize::parse(r.page_size)?,
            after: PageToken::parse(&r.page_token, "events")?,
        })
    }
}

impl TryFrom<pb::UpdateSessionRequest> for Write {
    type Error = DomainError;

    fn try_from(r: pb::UpdateSessionRequest) -> Result<Self, Self::Error> {
        let session_id = session_id(r.session_id)?;
        let patch = SessionPatch {
            world_time: r
                .world_time
                .map(|t| WorldTime::parse(t, "world_time"))
                .transpose()?,
            flags: r.flags.map(|f| struct_to_json(f, "flags")).transpose()?,
            relationships: r
                .relationships
                .map(|f| struct_to_json(f, "relationships"))
                .transpose()?,
        };
        Ok(Self {
            session_id,
            expected: expected(r.expected_version)?,
            request_id: RequestId::parse(&r.request_id)?,
            change: Change::Patch(patch),
        })
    }
}

impl TryFrom<pb::AdvanceSessionRequest> for Write {
    type Error = DomainError;

    fn try_from(r: pb::AdvanceSessionRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            session_id: session_id(r.session_id)?,
            change: Change::Advance(Advance::parse(r.edge_id, r.from_node_id, r.to_node_id)?),
            expected: expected(r.expected_version)?,
            request_id: RequestId::parse(&r.request_id)?,
        })
    }
}

impl TryFrom<pb::MutateSessionRequest> for Write {
    type Error = DomainError;

    fn try_from(r: pb::MutateSessionRequest) -> Result<Self, Self::Error> {
        let session_id = session_id(r.session_id)?;
        if r.ops.is_empty() {
            return Err(DomainError::invalid("ops", "must hold at least one op"));
        }
        let ops = r
            .ops
            .into_iter()
            .enumerate()
            .map(|(i, op)| SessionOp::try_from(op).map_err(|e| e.in_field(&format!("ops[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            session_id,
            change: Change::Ops(ops),
            expected: expected(r.expected_version)?,
            request_id: RequestId::parse(&r.request_id)?,
        })
    }
}

impl TryFrom<pb::DeleteSessionRequest> for Write {
    type Error = DomainError;

    fn try_from(r: pb::DeleteSessionRequest) -> Result<Self, Self::Error> {
        Ok(Self {
            session_id: session_id(r.session_id)?,
            change: Change::Delete,
            expected: expected(r.expected_version)?,
            request_id: RequestId::parse(&r.request_id)?,
        })
    }
}

impl TryFrom<pb::WatchSessionRequest> for (SessionId, i64) {
    type Error = DomainError;

    fn try_from(r: pb::WatchSessionRequest) -> Result<Self, Self::Error> {
        let id = session_id(r.session_id)?;
        if r.since_version < 0 {
            return Err(DomainError::invalid("since_version", "must not be negative"));
        }
        Ok((id, r.since_version))
    }
}
