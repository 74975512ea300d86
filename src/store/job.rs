//! One guarded write, described once for both backends: the next state, which
//! fields changed, the event it records, how many old events it prunes and its
//! idempotency record. The SQLite path (`write.rs`) writes it with sea-orm, the
//! PostgreSQL path (`pg_write.rs`) as one row of the group-commit statement; both
//! stamp the event and the record with the session's `updated_at`.

use super::{Owner, requests::WriteMeta};
use crate::domain::{Changed, JsonMap, Session, changes, diff};

/// One guarded write: `next` (already at its new version and time) replaces the
/// session if it is still at `expected`.
#[derive(Debug)]
pub(super) struct Job {
    pub owner: Owner,
    pub expected: i64,
    pub next: Session,
    pub rules_version: i64,
    /// Which fields differ from the base (only those are sent).
    pub changed: Changed,
    /// The event's diff.
    pub diff: JsonMap,
    pub action: &'static str,
    pub edge_id: Option<i64>,
    pub node_id: Option<i64>,
    /// The idempotency record's (user, request id), if any.
    pub request: Option<(i64, String)>,
    /// Events at or below this version are pruned (the per-session cap).
    pub cut: Option<i64>,
}

/// The newest version whose event falls out of a `max_events` cap when `version`
/// is written: versions are dense, so the cap is a range on (session_id, version).
/// `None` while the session is short (nothing to prune).
pub(super) fn cut(version: i64, max_events: i64) -> Option<i64> {
    (version > max_events).then(|| version - max_events)
}

impl Job {
    pub(super) fn new(
        owner: Owner,
        base: &Session,
        next: Session,
        rules_version: i64,
        meta: WriteMeta<'_>,
        max_events: i64,
    ) -> Self {
        let next_version = next.version;
        Self {
            owner,
            expected: base.version,
            changed: changes(base, &next),
            diff: diff(Some(base), &next),
            next,
            rules_version,
            action: meta.action,
            edge_id: meta.edge_id,
            node_id: meta.node_id,
            request: meta
                .request
                .map(|k| (k.user_id, k.request_id.as_str().to_owned())),
            cut: cut(next_version, max_events),
        }
    }
}
