//! Computing a write: the pure rules applied to the current state.

use super::{Change, DomainError, JsonLimits, Session, WorldRules, normalize_relationships};

/// The computed next state of a session and the rules version it was normalized with.
#[derive(Debug, Clone)]
pub struct Planned {
    pub next: Session,
    pub rules_version: i64,
}

/// The next state of `base` under `change`, normalized with `rules`; `None` if the
/// change would change nothing (no new version is written then).
///
/// `stored_rules_version` is the rules version the stored relationships were
/// normalized with, when known (lets a re-normalization skip up-to-date sessions).
pub fn plan(
    base: &Session,
    stored_rules_version: Option<i64>,
    change: &Change,
    rules: &WorldRules,
    limits: &JsonLimits,
) -> Result<Option<Planned>, DomainError> {
    let renormalize = matches!(change, Change::Renormalize);
    if renormalize && stored_rules_version.is_some_and(|v| v >= rules.version) {
        return Ok(None);
    }
    let mut next = change.apply(base)?;
    if next.world_time != base.world_time {
        let world = base.kind() == Some("world") || next.kind() == Some("world");
        let kind = world.then_some("world");
        rules.check_turn(kind, base.world_time, next.world_time)?;
    }
    normalize_relationships(&mut next.relationships, rules)?;
    next.check_limits(limits)?;
    if next.same_state(base) && !renormalize {
        return Ok(None);
    }
    Ok(Some(Planned {
        next,
        rules_version: rules.version,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{SessionPatch, WorldMode, WorldTime};

    fn base() -> Session {
        Session {
            world_id: Some(5),
            flags: json!({"sessionKind": "world"}).as_object().unwrap().clone(),
            current_node_id: 1,
            world_time: 100.0,
            version: 3,
            ..crate::domain::sample_session()
        }
    }

    fn patch(p: SessionPatch) -> Change {
        Change::Patch(p)
    }

    #[test]
    fn an_update_that_changes_nothing_plans_no_write() {
        let rules = WorldRules::defaults(5);
        let limits = JsonLimits::default();
        let same = SessionPatch {
            flags: Some(base().flags),
            ..Default::default()
        };
        assert!(
            plan(&base(), None, &patch(same), &rules, &limits)
                .unwrap()
                .is_none()
        );
        assert!(
            plan(&base(), None, &patch(SessionPatch::default()), &rules, &limits)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn relationships_are_normalized_on_write_with_the_rules_version_recorded() {
        let mut rules = WorldRules::defaults(5);
        rules.version = 4;
        let rel = json!({"npc:1": {"affinity": 65}}).as_object().unwrap().clone();
        let p = SessionPatch {
            relationships: Some(rel),
            ..Default::default()
        };
        let planned = plan(&base(), None, &patch(p), &rules, &JsonLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(planned.next.relationships["npc:1"]["tierId"], "close_friend");
        assert_eq!(planned.rules_version, 4);
    }

    #[test]
    fn turn_based_worlds_refuse_a_partial_turn() {
        let mut rules = WorldRules::defaults(5);
        rules.mode = WorldMode::TurnBased;
        let step = |t: f64| SessionPatch {
            world_time: Some(WorldTime::parse(t, "world_time").unwrap()),
            ..Default::default()
        };
        let limits = JsonLimits::default();
        assert!(
            plan(&base(), None, &patch(step(3700.0)), &rules, &limits)
                .unwrap()
                .is_some()
        );
        let err = plan(&base(), None, &patch(step(200.0)), &rules, &limits).unwrap_err();
        assert!(matches!(
            err,
            DomainError::Precondition {
                reason: "TURN_RULE",
                ..
            }
        ));
    }

    #[test]
    fn renormalization_skips_sessions_already_on_the_current_rules() {
        let mut rules = WorldRules::defaults(5);
        rules.version = 2;
        let limits = JsonLimits::default();
        assert!(
            plan(&base(), Some(2), &Change::Renormalize, &rules, &limits)
                .unwrap()
                .is_none()
        );
        assert!(
            plan(&base(), Some(1), &Change::Renormalize, &rules, &limits)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn results_over_the_json_limits_are_refused() {
        let limits = JsonLimits {
            max_bytes: 64,
            max_depth: 24,
        };
        let big = json!({"blob": "x".repeat(100)}).as_object().unwrap().clone();
        let p = SessionPatch {
            flags: Some(big),
            ..Default::default()
        };
        let err = plan(&base(), None, &patch(p), &WorldRules::defaults(5), &limits).unwrap_err();
        assert!(matches!(err, DomainError::Invalid(v) if v.field == "flags"));
    }
}
