//! WorldRules ⇄ domain.

use super::{
    pb,
    session::{datetime, timestamp},
};
use crate::domain::{DomainError, IntimacyLevel, PutRules, Tier, WorldMode, WorldRules};

impl From<&WorldRules> for pb::WorldRules {
    fn from(r: &WorldRules) -> Self {
        Self {
            world_id: r.world_id,
            tiers: r
                .tiers
                .iter()
                .map(|t| pb::RelationshipTier {
                    id: t.id.clone(),
                    min: t.min,
                    max: t.max,
                })
                .collect(),
            intimacy_levels: r
                .intimacy_levels
                .iter()
                .map(|l| pb::IntimacyLevel {
                    id: l.id.clone(),
                    min_affinity: l.min_affinity,
                    min_trust: l.min_trust,
                    min_chemistry: l.min_chemistry,
                    max_tension: l.max_tension,
                })
                .collect(),
            mode: r.mode.as_str().into(),
            turn_delta_seconds: Some(r.turn_delta_seconds),
            version: r.version,
            updated_at: r.updated_at.map(timestamp),
        }
    }
}

/// GetWorldRules: the world, a positive id.
impl TryFrom<pb::GetWorldRulesRequest> for i64 {
    type Error = DomainError;

    fn try_from(r: pb::GetWorldRulesRequest) -> Result<Self, Self::Error> {
        if r.world_id <= 0 {
            return Err(DomainError::invalid("world_id", "must be a positive integer"));
        }
        Ok(r.world_id)
    }
}

impl TryFrom<pb::PutWorldRulesRequest> for PutRules {
    type Error = DomainError;

    fn try_from(r: pb::PutWorldRulesRequest) -> Result<Self, Self::Error> {
        let rules = rules_from_request(r.world_id, r.rules)?;
        if r.expected_version.is_some_and(|v| v < 0) {
            return Err(DomainError::invalid("expected_version", "must not be negative"));
        }
        Ok(Self {
            rules,
            expected: r.expected_version,
        })
    }
}

/// Parses the rules of a PutWorldRules request for `world_id` (validated, in checking order).
fn rules_from_request(world_id: i64, rules: Option<pb::WorldRules>) -> Result<WorldRules, DomainError> {
    let r = rules.ok_or_else(|| DomainError::invalid("rules", "is required"))?;
    if r.world_id != 0 && r.world_id != world_id {
        return Err(DomainError::invalid(
            "rules.world_id",
            "must be 0 or equal world_id",
        ));
    }
    WorldRules {
        world_id,
        version: 0,
        updated_at: None,
        ..unvalidated(r)?
    }
    .validated()
}

/// Rules as the server sent them (GetWorldRules), validated; the client normalizes
/// its optimistic view with them.
impl TryFrom<pb::WorldRules> for WorldRules {
    type Error = DomainError;

    fn try_from(r: pb::WorldRules) -> Result<Self, Self::Error> {
        unvalidated(r)?.validated()
    }
}

/// The rules as sent, before [`WorldRules::validated`] checks and orders them.
fn unvalidated(r: pb::WorldRules) -> Result<WorldRules, DomainError> {
    Ok(WorldRules {
        world_id: r.world_id,
        tiers: r
            .tiers
            .into_iter()
            .map(|t| Tier {
                id: t.id,
                min: t.min,
                max: t.max,
            })
            .collect(),
        intimacy_levels: r
            .intimacy_levels
            .into_iter()
            .map(|l| IntimacyLevel {
                id: l.id,
                min_affinity: l.min_affinity,
                min_trust: l.min_trust,
                min_chemistry: l.min_chemistry,
                max_tension: l.max_tension,
            })
            .collect(),
        mode: WorldMode::parse(&r.mode)?,
        turn_delta_seconds: r.turn_delta_seconds.unwrap_or(WorldRules::DEFAULT_TURN_DELTA),
        version: r.version,
        updated_at: r.updated_at.map(|t| datetime(Some(t))),
    })
}
