//! GameSession and SessionEvent ⇄ domain, and timestamps.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use super::{json::struct_to_json, json_to_struct, pb};
use crate::domain::{DomainError, Session, SessionEvent};

/// A chrono time as a protobuf Timestamp.
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf Timestamp as a chrono time (out-of-range values become the epoch).
pub fn datetime(t: Option<Timestamp>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .unwrap_or_default()
}

impl From<&Session> for pb::GameSession {
    fn from(s: &Session) -> Self {
        Self {
            id: s.id,
            user_id: s.user_id,
            scene_id: s.scene_id,
            current_node_id: s.current_node_id,
            world_id: s.world_id,
            flags: Some(json_to_struct(&s.flags)),
            relationships: Some(json_to_struct(&s.relationships)),
            world_time: s.world_time,
            version: s.version,
            created_at: Some(timestamp(s.created_at)),
            updated_at: Some(timestamp(s.updated_at)),
        }
    }
}

impl From<Session> for pb::GameSession {
    fn from(s: Session) -> Self {
        Self::from(&s)
    }
}

impl TryFrom<pb::GameSession> for Session {
    type Error = DomainError;

    fn try_from(g: pb::GameSession) -> Result<Self, Self::Error> {
        Ok(Self {
            id: g.id,
            user_id: g.user_id,
            scene_id: g.scene_id,
            current_node_id: g.current_node_id,
            world_id: g.world_id,
            flags: struct_to_json(g.flags.unwrap_or_default(), "flags")?,
            relationships: struct_to_json(g.relationships.unwrap_or_default(), "relationships")?,
            world_time: g.world_time,
            version: g.version,
            created_at: datetime(g.created_at),
            updated_at: datetime(g.updated_at),
        })
    }
}

impl From<SessionEvent> for pb::SessionEvent {
    fn from(e: SessionEvent) -> Self {
        Self {
            id: e.id,
            session_id: e.session_id,
            version: e.version,
            action: e.action,
            edge_id: e.edge_id,
            node_id: e.node_id,
            diff: Some(json_to_struct(&e.diff)),
            created_at: Some(timestamp(e.created_at)),
        }
    }
}
