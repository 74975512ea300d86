//! The `diff` of a session event: which top-level fields a write changed.

use serde_json::{Value, json};

use super::{Changed, JsonMap, Session, changes, json::encoded_len};

/// Values whose JSON encoding is longer than this are left out of a diff.
const SMALL: usize = 1024;

/// Keys of a diff that other code reads or builds (the PostgreSQL write puts the
/// documents' new values back itself).
pub mod keys {
    /// The two documents.
    pub const FLAGS: &str = "flags";
    pub const RELATIONSHIPS: &str = "relationships";
    /// An entry's value after the write.
    pub const NEW: &str = "new";
}
use keys::{FLAGS, NEW, RELATIONSHIPS};

/// `{field: {"old": …, "new": …}}` for every changed field; values whose JSON is
/// over 1 KiB become `{"changed": true}`. With no `old` (a created session) only
/// `new` values appear. Large objects are measured before they are copied.
pub fn diff(old: Option<&Session>, new: &Session) -> JsonMap {
    let mut out = JsonMap::new();
    let mut put = |name: &str, old: Option<Option<Value>>, new: Option<Value>| {
        out.insert(name.into(), entry(old, new));
    };
    let all = Changed {
        current_node_id: true,
        world_time: true,
        flags: true,
        relationships: true,
    };
    let changed = old.map_or(all, |o| changes(o, new));
    if changed.current_node_id {
        put(
            "current_node_id",
            old.map(|o| Some(json!(o.current_node_id))),
            Some(json!(new.current_node_id)),
        );
    }
    if changed.world_time {
        put(
            "world_time",
            old.map(|o| Some(json!(o.world_time))),
            Some(json!(new.world_time)),
        );
    }
    if changed.flags {
        put(FLAGS, old.map(|o| small(&o.flags)), small(&new.flags));
    }
    if changed.relationships {
        put(
            RELATIONSHIPS,
            old.map(|o| small(&o.relationships)),
            small(&new.relationships),
        );
    }
    out
}

/// A copy of the object if its JSON fits in [`SMALL`] bytes.
fn small(map: &JsonMap) -> Option<Value> {
    (encoded_len(map) <= SMALL).then(|| Value::Object(map.clone()))
}

/// `old` is `None` for a created session, `Some(None)` when the old value was too large.
fn entry(old: Option<Option<Value>>, new: Option<Value>) -> Value {
    match (old, new) {
        (Some(None), _) | (_, None) => json!({ "changed": true }),
        (Some(Some(old)), Some(new)) => json!({ "old": old, NEW: new }),
        (None, Some(new)) => json!({ NEW: new }),
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
