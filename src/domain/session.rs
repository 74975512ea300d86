//! The session record and the commands that change it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DomainError, JsonLimits, JsonMap};

/// One player's game session, as stored and as returned to callers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    pub scene_id: i64,
    pub current_node_id: i64,
    pub world_id: Option<i64>,
    pub flags: JsonMap,
    pub relationships: JsonMap,
    pub world_time: f64,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which of the fields a write can change differ between two states of a session.
/// The one list of those fields: the SQL of both databases, the event diff, the
/// no-op check and the client's UpdateSession patch all ask this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    pub current_node_id: bool,
    pub world_time: bool,
    pub flags: bool,
    pub relationships: bool,
}

impl Changed {
    pub fn any(self) -> bool {
        self.current_node_id || self.world_time || self.flags || self.relationships
    }
}

/// What differs between `old` and `new` (ids, version and times aside).
pub fn changes(old: &Session, new: &Session) -> Changed {
    Changed {
        current_node_id: old.current_node_id != new.current_node_id,
        world_time: old.world_time != new.world_time,
        // Cheap when unchanged documents are the same allocation or differ early.
        flags: old.flags != new.flags,
        relationships: old.relationships != new.relationships,
    }
}

impl Session {
    /// True when the fields a write can change are equal (ids, version and times aside).
    pub fn same_state(&self, other: &Session) -> bool {
        !changes(self, other).any()
    }

    /// `flags.sessionKind`, which decides whether turn rules apply.
    pub fn kind(&self) -> Option<&str> {
        self.flags.get("sessionKind").and_then(|v| v.as_str())
    }

    /// Checks the JSON bounds of both free-form fields.
    pub fn check_limits(&self, limits: &JsonLimits) -> Result<(), DomainError> {
        limits.check("flags", &self.flags)?;
        limits.check("relationships", &self.relationships)
    }
}

/// The in-game clock in seconds: finite and not negative.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct WorldTime(f64);

impl WorldTime {
    pub fn parse(raw: f64, field: &str) -> Result<Self, DomainError> {
        if !raw.is_finite() {
            return Err(DomainError::invalid(field, "must be a finite number"));
        }
        if raw < 0.0 {
            return Err(DomainError::invalid(field, "must not be negative"));
        }
        Ok(Self(raw))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// A positive id from another service (scene, node, edge, world).
pub(crate) fn positive(raw: i64, field: &str) -> Result<i64, DomainError> {
    if raw <= 0 {
        return Err(DomainError::invalid(field, "must be a positive integer"));
    }
    Ok(raw)
}

/// What CreateSession asks for; the owner is the caller, given separately.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub scene_id: i64,
    pub entry_node_id: i64,
    pub world_id: Option<i64>,
    pub flags: JsonMap,
    pub relationships: JsonMap,
    pub world_time: WorldTime,
}

impl NewSession {
    pub fn parse(
        scene_id: i64,
        entry_node_id: i64,
        world_id: Option<i64>,
        world_time: Option<f64>,
    ) -> Result<Self, DomainError> {
        Ok(Self {
            scene_id: positive(scene_id, "scene_id")?,
            entry_node_id: positive(entry_node_id, "entry_node_id")?,
            world_id: world_id.map(|w| positive(w, "world_id")).transpose()?,
            flags: JsonMap::new(),
            relationships: JsonMap::new(),
            world_time: WorldTime::parse(world_time.unwrap_or(0.0), "world_time")?,
        })
    }

    /// The session as it will be stored at version 1 (the store assigns the id).
    pub fn to_session(&self, user_id: i64, now: DateTime<Utc>) -> Session {
        Session {
            id: 0,
            user_id,
            scene_id: self.scene_id,
            current_node_id: self.entry_node_id,
            world_id: self.world_id,
            flags: self.flags.clone(),
            relationships: self.relationships.clone(),
            world_time: self.world_time.get(),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

/// UpdateSession: present fields replace the stored ones whole; absent ones stay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionPatch {
    pub world_time: Option<WorldTime>,
    pub flags: Option<JsonMap>,
    pub relationships: Option<JsonMap>,
}

impl SessionPatch {
    pub fn is_empty(&self) -> bool {
        self.world_time.is_none() && self.flags.is_none() && self.relationships.is_none()
    }

    /// `session` with this patch applied, copying only the documents it keeps.
    pub fn applied(&self, session: &Session) -> Session {
        let keep_or = |new: &Option<JsonMap>, old: &JsonMap| new.as_ref().unwrap_or(old).clone();
        Session {
            id: session.id,
            user_id: session.user_id,
            scene_id: session.scene_id,
            current_node_id: session.current_node_id,
            world_id: session.world_id,
            flags: keep_or(&self.flags, &session.flags),
            relationships: keep_or(&self.relationships, &session.relationships),
            world_time: self.world_time.map_or(session.world_time, WorldTime::get),
            version: session.version,
            created_at: session.created_at,
            updated_at: session.updated_at,
        }
    }

    pub fn apply_to(&self, session: &mut Session) {
        if let Some(t) = self.world_time {
            session.world_time = t.get();
        }
        if let Some(flags) = &self.flags {
            session.flags = flags.clone();
        }
        if let Some(rel) = &self.relationships {
            session.relationships = rel.clone();
        }
    }
}

/// AdvanceSession: the player followed an edge of the scene graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    pub edge_id: i64,
    pub from_node_id: i64,
    pub to_node_id: i64,
}

impl Advance {
    pub fn parse(edge_id: i64, from_node_id: i64, to_node_id: i64) -> Result<Self, DomainError> {
        Ok(Self {
            edge_id: positive(edge_id, "edge_id")?,
            from_node_id: positive(from_node_id, "from_node_id")?,
            to_node_id: positive(to_node_id, "to_node_id")?,
        })
    }

    /// Moves the session, refusing if it is not at `from_node_id`.
    pub fn apply_to(&self, session: &mut Session) -> Result<(), DomainError> {
        if session.current_node_id != self.from_node_id {
            return Err(DomainError::precondition(
                "WRONG_NODE",
                format!(
                    "session is at node {}, not at from_node_id {}",
                    session.current_node_id, self.from_node_id
                ),
            ));
        }
        session.current_node_id = self.to_node_id;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn sample() -> Session {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Session {
            id: 1,
            user_id: 7,
            scene_id: 3,
            current_node_id: 10,
            world_id: None,
            flags: JsonMap::new(),
            relationships: JsonMap::new(),
            world_time: 0.0,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// The sample session at `version`, shared as caches hold it.
    pub(crate) fn sample_at(version: i64) -> std::sync::Arc<Session> {
        std::sync::Arc::new(Session { version, ..sample() })
    }

    #[test]
    fn world_time_must_be_finite_and_not_negative() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
            assert!(WorldTime::parse(bad, "world_time").is_err(), "{bad}");
        }
        assert_eq!(WorldTime::parse(3.5, "world_time").unwrap().get(), 3.5);
    }

    #[test]
    fn a_patch_replaces_present_fields_whole_and_keeps_absent_ones() {
        let mut s = sample();
        s.flags = json!({"a": 1, "b": 2}).as_object().unwrap().clone();
        s.world_time = 5.0;
        let patch = SessionPatch {
            flags: Some(json!({"c": 3}).as_object().unwrap().clone()),
            ..Default::default()
        };
        patch.apply_to(&mut s);
        assert_eq!(serde_json::Value::Object(s.flags.clone()), json!({"c": 3}));
        assert_eq!(s.world_time, 5.0);
    }

    #[test]
    fn advance_refuses_a_move_from_another_node() {
        let mut s = sample();
        let wrong = Advance::parse(1, 11, 12).unwrap();
        assert!(matches!(
            wrong.apply_to(&mut s),
            Err(DomainError::Precondition {
                reason: "WRONG_NODE",
                ..
            })
        ));
        Advance::parse(1, 10, 12).unwrap().apply_to(&mut s).unwrap();
        assert_eq!(s.current_node_id, 12);
    }
}
