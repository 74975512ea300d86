//! Write-time normalization of `relationships`: the server stores `tierId` and
//! `intimacyLevelId` in every `npc:<n>` entry so reads never compute anything.

use serde_json::Value;

use super::{DomainError, JsonMap, WorldRules, world::Stats};

/// Keys the server computes; anything a caller sends under them is overwritten.
pub const TIER_KEY: &str = "tierId";
pub const INTIMACY_KEY: &str = "intimacyLevelId";

/// `npc:<integer>` keys carry NPC relationships; other keys pass through untouched.
pub(crate) fn is_npc_key(key: &str) -> bool {
    key.strip_prefix("npc:")
        .is_some_and(|n| !n.is_empty() && n.parse::<i64>().is_ok())
}

/// Computes and stores the tier and intimacy level of every NPC entry.
///
/// Idempotent: normalizing twice gives the same map as normalizing once.
pub fn normalize_relationships(rel: &mut JsonMap, rules: &WorldRules) -> Result<(), DomainError> {
    for (key, value) in rel.iter_mut() {
        if !is_npc_key(key) {
            continue;
        }
        let field = format!("relationships.{key}");
        let Value::Object(entry) = value else {
            return Err(DomainError::invalid(field, "must be an object"));
        };
        let stats = stats_of(entry, &field)?;
        let tier = rules.tier_for(stats.affinity);
        let level = rules.intimacy_for(&stats);
        entry.insert(TIER_KEY.into(), tier.map_or(Value::Null, |t| t.into()));
        entry.insert(INTIMACY_KEY.into(), level.map_or(Value::Null, |l| l.into()));
    }
    Ok(())
}

fn stats_of(entry: &JsonMap, field: &str) -> Result<Stats, DomainError> {
    let stat = |name: &str| -> Result<f64, DomainError> {
        match entry.get(name) {
            None | Some(Value::Null) => Ok(0.0),
            Some(Value::Number(n)) => Ok(n.as_f64().unwrap_or(0.0).clamp(0.0, 100.0)),
            Some(_) => Err(DomainError::invalid(
                format!("{field}.{name}"),
                "must be a number",
            )),
        }
    };
    if let Some(flags) = entry.get("flags")
        && !(flags.is_array() || flags.is_null())
    {
        return Err(DomainError::invalid(format!("{field}.flags"), "must be a list"));
    }
    Ok(Stats {
        affinity: stat("affinity")?,
        trust: stat("trust")?,
        chemistry: stat("chemistry")?,
        tension: stat("tension")?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> JsonMap {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn npc_entries_get_tier_and_intimacy_and_other_keys_pass_through() {
        let mut rel = map(json!({
            "npc:1": {"affinity": 85, "chemistry": 90, "trust": 70, "flags": ["met"]},
            "npc:2": {"affinity": 15},
            "npcPair:1:2": {"rivalry": 5},
            "network": [1, 2],
            "npc:abc": 3,
        }));
        normalize_relationships(&mut rel, &WorldRules::defaults(0)).unwrap();
        assert_eq!(rel["npc:1"]["tierId"], "lover");
        assert_eq!(rel["npc:1"]["intimacyLevelId"], "very_intimate");
        assert_eq!(rel["npc:1"]["flags"], json!(["met"]));
        assert_eq!(rel["npc:2"]["tierId"], "acquaintance");
        assert_eq!(rel["npc:2"]["intimacyLevelId"], Value::Null);
        assert_eq!(rel["npcPair:1:2"], json!({"rivalry": 5}));
        assert_eq!(rel["network"], json!([1, 2]));
        assert_eq!(rel["npc:abc"], json!(3));
    }

    #[test]
    fn stats_are_clamped_for_the_computation_but_stored_as_sent() {
        let mut rel = map(json!({"npc:3": {"affinity": 250, "chemistry": -40}}));
        normalize_relationships(&mut rel, &WorldRules::defaults(0)).unwrap();
        assert_eq!(rel["npc:3"]["tierId"], "lover");
        assert_eq!(rel["npc:3"]["affinity"], 250);
        assert_eq!(rel["npc:3"]["intimacyLevelId"], Value::Null);
    }

    #[test]
    fn a_non_object_npc_entry_is_invalid() {
        for bad in [json!(5), json!("x"), json!([1]), json!(null)] {
            let mut rel = map(json!({ "npc:4": bad }));
            let err = normalize_relationships(&mut rel, &WorldRules::defaults(0)).unwrap_err();
            assert!(matches!(err, DomainError::Invalid(v) if v.field == "relationships.npc:4"));
        }
    }

    #[test]
    fn a_non_numeric_stat_is_invalid() {
        let mut rel = map(json!({"npc:4": {"trust": "high"}}));
        let err = normalize_relationships(&mut rel, &WorldRules::defaults(0)).unwrap_err();
        assert!(matches!(err, DomainError::Invalid(v) if v.field == "relationships.npc:4.trust"));
    }
}
