//! The `diff` of a session event: which top-level fields a write changed.

use serde_json::{Value, json};

use super::{JsonMap, Session};

/// Values whose JSON encoding is longer than this are left out of a diff.
const SMALL: usize = 1024;

/// `{field: {"old": …, "new": …}}` for every changed field; large values become
/// `{"changed": true}`. With no `old` (a created session) only `new` values appear.
pub fn diff(old: Option<&Session>, new: &Session) -> JsonMap {
    let fields = |s: &Session| {
        [
            ("current_node_id", json!(s.current_node_id)),
            ("world_time", json!(s.world_time)),
            ("flags", Value::Object(s.flags.clone())),
            ("relationships", Value::Object(s.relationships.clone())),
        ]
    };
    let mut out = JsonMap::new();
    let new_fields = fields(new);
    let old_fields = old.map(fields);
    for (i, (name, new_value)) in new_fields.into_iter().enumerate() {
        let old_value = old_fields.as_ref().map(|f| f[i].1.clone());
        if old_value.as_ref() == Some(&new_value) {
            continue;
        }
        out.insert(name.into(), entry(old_value, new_value));
    }
    out
}

fn entry(old: Option<Value>, new: Value) -> Value {
    let small = |v: &Value| serde_json::to_string(v).is_ok_and(|s| s.len() <= SMALL);
    if !small(&new) || old.as_ref().is_some_and(|o| !small(o)) {
        return json!({ "changed": true });
    }
    match old {
        Some(old) => json!({ "old": old, "new": new }),
        None => json!({ "new": new }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::tests::sample;

    #[test]
    fn only_changed_fields_appear_with_old_and_new_values() {
        let old = sample();
        let mut new = old.clone();
        new.world_time = 10.0;
        let d = diff(Some(&old), &new);
        assert_eq!(Value::Object(d), json!({"world_time": {"old": 0.0, "new": 10.0}}));
    }

    #[test]
    fn large_values_are_marked_changed_without_their_content() {
        let old = sample();
        let mut new = old.clone();
        new.flags.insert("blob".into(), json!("x".repeat(2000)));
        let d = diff(Some(&old), &new);
        assert_eq!(d["flags"], json!({"changed": true}));
    }

    #[test]
    fn a_created_session_lists_its_initial_values() {
        let d = diff(None, &sample());
        assert_eq!(d["current_node_id"], json!({"new": 10}));
        assert_eq!(d.len(), 4);
    }
}
