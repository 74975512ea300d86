//! Per-world relationship rules and turn rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::DomainError;

/// How world time may move in a world's `world` sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorldMode {
    Free,
    TurnBased,
}

impl WorldMode {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        match raw {
            "" | "free" => Ok(Self::Free),
            "turn_based" => Ok(Self::TurnBased),
            other => Err(DomainError::invalid(
                "rules.mode",
                format!("must be \"free\" or \"turn_based\", not {other:?}"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::TurnBased => "turn_based",
        }
    }
}

/// An affinity band: `min ..= max`; without `max` it reaches up to the next tier's `min`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tier {
    pub id: String,
    pub min: f64,
    pub max: Option<f64>,
}

/// An intimacy level: every given bound must hold (minimums inclusive, tension at most).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntimacyLevel {
    pub id: String,
    pub min_affinity: Option<f64>,
    pub min_trust: Option<f64>,
    pub min_chemistry: Option<f64>,
    pub max_tension: Option<f64>,
}

impl IntimacyLevel {
    fn demand(&self) -> f64 {
        self.min_affinity.unwrap_or(0.0)
            + self.min_trust.unwrap_or(0.0)
            + self.min_chemistry.unwrap_or(0.0)
            + (100.0 - self.max_tension.unwrap_or(100.0))
    }
}

/// The rules of one world. Validated and put in checking order by [`WorldRules::validated`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldRules {
    pub world_id: i64,
    /// Sorted by `min`, not overlapping.
    pub tiers: Vec<Tier>,
    /// Most demanding first.
    pub intimacy_levels: Vec<IntimacyLevel>,
    pub mode: WorldMode,
    pub turn_delta_seconds: f64,
    /// 0 for the built-in defaults.
    pub version: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Tolerance when comparing a world-time step with `turn_delta_seconds`.
const TURN_TOLERANCE: f64 = 0.001;

impl WorldRules {
    pub const DEFAULT_TURN_DELTA: f64 = 3600.0;

    /// The built-in rules that apply to sessions of worlds without their own.
    pub fn defaults(world_id: i64) -> Self {
        let tier = |id: &str, min: f64| Tier {
            id: id.into(),
            min,
            max: None,
        };
        let level = |id: &str, a: f64, c: f64, t: Option<f64>| IntimacyLevel {
            id: id.into(),
            min_affinity: Some(a),
            min_trust: t,
            min_chemistry: Some(c),
            max_tension: None,
        };
        Self {
            world_id,
            tiers: vec![
                tier("stranger", 0.0),
                tier("acquaintance", 10.0),
                tier("friend", 30.0),
                tier("close_friend", 60.0),
                tier("lover", 80.0),
            ],
            intimacy_levels: vec![
                level("very_intimate", 80.0, 80.0, Some(60.0)),
                level("intimate", 60.0, 60.0, Some(40.0)),
                level("deep_flirt", 40.0, 40.0, Some(20.0)),
                level("light_flirt", 20.0, 20.0, None),
            ],
            mode: WorldMode::Free,
            turn_delta_seconds: Self::DEFAULT_TURN_DELTA,
            version: 0,
            updated_at: None,
        }
    }

    /// Checks the rules and puts tiers and levels in checking order.
    pub fn validated(mut self) -> Result<Self, DomainError> {
        if self.world_id <= 0 {
            return Err(DomainError::invalid("world_id", "must be a positive integer"));
        }
        if !(self.turn_delta_seconds.is_finite() && self.turn_delta_seconds > 0.0) {
            return Err(DomainError::invalid(
                "rules.turn_delta_seconds",
                "must be a positive finite number",
            ));
        }
        check_tiers(&mut self.tiers)?;
        check_levels(&mut self.intimacy_levels)?;
        Ok(self)
    }

    /// The tier whose band holds `affinity` (already clamped to 0..100), if any.
    pub fn tier_for(&self, affinity: f64) -> Option<&str> {
        let pos = self.tiers.iter().rposition(|t| t.min <= affinity)?;
        let tier = &self.tiers[pos];
        match tier.max {
            Some(max) if affinity > max => None,
            _ => Some(&tier.id),
        }
    }

    /// The first (most demanding) level whose bounds all hold.
    pub fn intimacy_for(&self, stats: &Stats) -> Option<&str> {
        let at_least = |bound: Option<f64>, value: f64| bound.is_none_or(|b| value >= b);
        self.intimacy_levels
            .iter()
            .find(|l| {
                at_least(l.min_affinity, stats.affinity)
                    && at_least(l.min_trust, stats.trust)
                    && at_least(l.min_chemistry, stats.chemistry)
                    && l.max_tension.is_none_or(|m| stats.tension <= m)
            })
            .map(|l| l.id.as_str())
    }

    /// In a turn-based world, a `world` session's clock moves by 0 or one turn.
    pub fn check_turn(&self, kind: Option<&str>, old: f64, new: f64) -> Result<(), DomainError> {
        if self.mode != WorldMode::TurnBased || kind != Some("world") {
            return Ok(());
        }
        let step = new - old;
        if step.abs() <= TURN_TOLERANCE || (step - self.turn_delta_seconds).abs() <= TURN_TOLERANCE {
            return Ok(());
        }
        Err(DomainError::precondition(
            "TURN_RULE",
            format!(
                "world {} is turn-based: world_time must move by 0 or {} seconds, not {step}",
                self.world_id, self.turn_delta_seconds
            ),
        ))
    }
}

/// Relationship stats clamped to 0..100 for the computation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stats {
    pub affinity: f64,
    pub trust: f64,
    pub chemistry: f64,
    pub tension: f64,
}

fn finite(value: f64, field: String) -> Result<(), DomainError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(DomainError::invalid(field, "must be a finite number"))
    }
}

fn check_id(id: &str, field: String, seen: &mut Vec<String>) -> Result<(), DomainError> {
    if id.trim().is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if seen.iter().any(|s| s == id) {
        return Err(DomainError::invalid(field, format!("duplicate id {id:?}")));
    }
    seen.push(id.to_owned());
    Ok(())
}

fn check_tiers(tiers: &mut [Tier]) -> Result<(), DomainError> {
    let mut seen = Vec::new();
    for (i, t) in tiers.iter().enumerate() {
        check_id(&t.id, format!("rules.tiers[{i}].id"), &mut seen)?;
        finite(t.min, format!("rules.tiers[{i}].min"))?;
        if let Some(max) = t.max {
            finite(max, format!("rules.tiers[{i}].max"))?;
            if max < t.min {
                return Err(DomainError::invalid(
                    format!("rules.tiers[{i}].max"),
                    "must not be below min",
                ));
            }
        }
    }
    tiers.sort_by(|a, b| a.min.total_cmp(&b.min));
    for pair in tiers.windows(2) {
        let (lower, upper) = (&pair[0], &pair[1]);
        let overlaps = lower.min == upper.min || lower.max.is_some_and(|m| m >= upper.min);
        if overlaps {
            return Err(DomainError::invalid(
                "rules.tiers",
                format!("tiers {:?} and {:?} overlap", lower.id, upper.id),
            ));
        }
    }
    Ok(())
}

fn check_levels(levels: &mut [IntimacyLevel]) -> Result<(), DomainError> {
    let mut seen = Vec::new();
    for (i, l) in levels.iter().enumerate() {
        check_id(&l.id, format!("rules.intimacy_levels[{i}].id"), &mut seen)?;
        let bounds = [
            ("min_affinity", l.min_affinity),
            ("min_trust", l.min_trust),
            ("min_chemistry", l.min_chemistry),
            ("max_tension", l.max_tension),
        ];
        for (name, value) in bounds {
            if let Some(v) = value {
                finite(v, format!("rules.intimacy_levels[{i}].{name}"))?;
            }
        }
    }
    // Stable: levels that demand the same keep the order they were given in.
    levels.sort_by(|a, b| b.demand().total_cmp(&a.demand()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> WorldRules {
        WorldRules::defaults(1)
    }

    #[test]
    fn default_tiers_change_exactly_at_their_thresholds() {
        let r = rules();
        let cases = [
            (0.0, "stranger"),
            (9.99, "stranger"),
            (10.0, "acquaintance"),
            (29.99, "acquaintance"),
            (30.0, "friend"),
            (59.99, "friend"),
            (60.0, "close_friend"),
            (79.99, "close_friend"),
            (80.0, "lover"),
            (100.0, "lover"),
        ];
        for (affinity, want) in cases {
            assert_eq!(r.tier_for(affinity), Some(want), "affinity {affinity}");
        }
    }

    #[test]
    fn default_intimacy_levels_change_exactly_at_their_thresholds() {
        let r = rules();
        let s = |affinity, chemistry, trust| Stats {
            affinity,
            chemistry,
            trust,
            tension: 0.0,
        };
        let cases = [
            (s(80.0, 80.0, 60.0), Some("very_intimate")),
            (s(80.0, 80.0, 59.9), Some("intimate")),
            (s(79.9, 80.0, 60.0), Some("intimate")),
            (s(60.0, 60.0, 40.0), Some("intimate")),
            (s(60.0, 59.9, 40.0), Some("deep_flirt")),
            (s(40.0, 40.0, 20.0), Some("deep_flirt")),
            (s(40.0, 40.0, 19.9), Some("light_flirt")),
            (s(20.0, 20.0, 0.0), Some("light_flirt")),
            (s(19.9, 20.0, 0.0), None),
            (s(20.0, 19.9, 100.0), None),
        ];
        for (stats, want) in cases {
            assert_eq!(r.intimacy_for(&stats), want, "{stats:?}");
        }
    }

    #[test]
    fn world_rules_sort_tiers_and_levels_into_checking_order() {
        let mut r = rules();
        r.tiers.reverse();
        r.intimacy_levels.reverse();
        let r = r.validated().unwrap();
        assert_eq!(r.tiers[0].id, "stranger");
        assert_eq!(r.intimacy_levels[0].id, "very_intimate");
        assert_eq!(r.intimacy_levels[3].id, "light_flirt");
    }

    #[test]
    fn a_tier_with_a_max_leaves_a_gap_above_it() {
        let mut r = rules();
        r.tiers = vec![
            Tier {
                id: "low".into(),
                min: 0.0,
                max: Some(10.0),
            },
            Tier {
                id: "high".into(),
                min: 50.0,
                max: None,
            },
        ];
        let r = r.validated().unwrap();
        assert_eq!(r.tier_for(10.0), Some("low"));
        assert_eq!(r.tier_for(10.5), None);
        assert_eq!(r.tier_for(50.0), Some("high"));
    }

    #[test]
    fn invalid_rules_are_refused_with_the_field_named() {
        type Breakage = Box<dyn Fn(&mut WorldRules)>;
        let cases: Vec<(&str, Breakage)> = vec![
            ("rules.tiers", Box::new(|r| r.tiers[1].min = 0.0)),
            ("rules.tiers", Box::new(|r| r.tiers[0].max = Some(10.0))),
            ("rules.tiers[2].id", Box::new(|r| r.tiers[2].id = " ".into())),
            ("rules.tiers[1].min", Box::new(|r| r.tiers[1].min = f64::NAN)),
            ("rules.tiers[1].max", Box::new(|r| r.tiers[1].max = Some(1.0))),
            (
                "rules.intimacy_levels[0].id",
                Box::new(|r| r.intimacy_levels[0].id.clear()),
            ),
            (
                "rules.intimacy_levels[1].id",
                Box::new(|r| r.intimacy_levels[1].id = "very_intimate".into()),
            ),
            (
                "rules.intimacy_levels[2].max_tension",
                Box::new(|r| r.intimacy_levels[2].max_tension = Some(f64::INFINITY)),
            ),
            (
                "rules.turn_delta_seconds",
                Box::new(|r| r.turn_delta_seconds = f64::NAN),
            ),
            ("world_id", Box::new(|r| r.world_id = 0)),
        ];
        for (field, break_it) in cases {
            let mut r = rules();
            break_it(&mut r);
            match r.validated() {
                Err(DomainError::Invalid(v)) => assert_eq!(v.field, field),
                other => panic!("{field}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn turn_based_world_sessions_move_by_zero_or_one_turn() {
        let mut r = rules();
        r.mode = WorldMode::TurnBased;
        assert!(r.check_turn(Some("world"), 100.0, 100.0).is_ok());
        assert!(r.check_turn(Some("world"), 100.0, 3700.0005).is_ok());
        assert!(r.check_turn(Some("world"), 100.0, 3701.0).is_err());
        assert!(r.check_turn(Some("world"), 100.0, 1800.0).is_err());
        // Other kinds of session, and free worlds, are not constrained.
        assert!(r.check_turn(Some("scene"), 100.0, 1800.0).is_ok());
        assert!(r.check_turn(None, 100.0, 1800.0).is_ok());
        r.mode = WorldMode::Free;
        assert!(r.check_turn(Some("world"), 100.0, 1800.0).is_ok());
    }
}
