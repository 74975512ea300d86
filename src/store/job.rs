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
    /// Earlier writes of the same session folded into this one (see
    /// [`Store::cas_chain`](super::Store::cas_chain)), oldest first: each has its own
    /// version, event and idempotency record; the row takes only `next`.
    pub earlier: Vec<Step>,
}

/// A write folded into a later one of the same session.
#[derive(Debug)]
pub(super) struct Step {
    /// The session as this write left it (its answer, and its record's snapshot).
    pub session: Session,
    pub diff: JsonMap,
    pub action: &'static str,
    pub edge_id: Option<i64>,
    pub node_id: Option<i64>,
    pub request: Option<(i64, String)>,
}

/// One write of a chain: the state it leaves (at its own version) and what its event
/// and record say.
#[derive(Debug)]
pub struct Link<'a> {
    pub next: Session,
    pub rules_version: i64,
    pub meta: WriteMeta<'a>,
}

fn request_of(meta: &WriteMeta<'_>) -> Option<(i64, String)> {
    meta.request
        .map(|k| (k.user_id, k.request_id.as_str().to_owned()))
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
            request: request_of(&meta),
            cut: cut(next_version, max_events),
            earlier: Vec::new(),
        }
    }

    /// Several writes of one session, each planned on the one before, as one job:
    /// the row goes from `base` to the last state in one guarded write, and every
    /// link keeps its own version, event and record. `links` is not empty.
    pub(super) fn chain(owner: Owner, base: &Session, mut links: Vec<Link<'_>>, max_events: i64) -> Self {
        let last = links.pop().expect("a chain has a link");
        let mut earlier: Vec<Step> = Vec::with_capacity(links.len());
        for link in links {
            let prev = earlier.last().map_or(base, |s| &s.session);
            earlier.push(Step {
                diff: diff(Some(prev), &link.next),
                action: link.meta.action,
                edge_id: link.meta.edge_id,
                node_id: link.meta.node_id,
                request: request_of(&link.meta),
                session: link.next,
            });
        }
        let prev = earlier.last().map_or(base, |s| &s.session);
        let mut job = Self::new(owner, prev, last.next, last.rules_version, last.meta, max_events);
        // The row's guard and columns go by the chain's base, not the last link's.
        job.expected = base.version;
        job.changed = changes(base, &job.next);
        job.earlier = earlier;
        job
    }
}
