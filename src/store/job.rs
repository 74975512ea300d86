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

/// Events past the cap are deleted this many versions at a time: a delete, its WAL
/// and the dead tuples it leaves cost PostgreSQL about as much for 32 events as for
/// one (BENCHMARKS.md, round seven).
pub(super) const TRIM_EVERY: i64 = 32;

/// What a write taking a session from version `from` to `to` prunes: every event at
/// or below the returned version. Versions are dense, so the cap is a range on
/// (session_id, version); it is pruned when the write's versions cross a multiple of
/// [`TRIM_EVERY`] past the cap, so up to `TRIM_EVERY - 1` events beyond the cap stay
/// stored between prunes (ListSessionEvents never shows them). `None`: nothing now.
pub(super) fn cut(from: i64, to: i64, max_events: i64) -> Option<i64> {
    let (before, after) = ((from - max_events).max(0), to - max_events);
    (after / TRIM_EVERY > before / TRIM_EVERY).then_some(after)
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
        let cut = cut(base.version, next.version, max_events);
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
            cut,
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
        job.cut = cut(base.version, job.next.version, max_events);
        job.earlier = earlier;
        job
    }
}

#[cfg(test)]
mod tests {
    use super::{TRIM_EVERY, cut};

    #[test]
    fn the_cap_is_pruned_in_ranges_when_a_write_crosses_a_multiple_past_it() {
        let max = 5;
        // Short sessions and writes that cross no multiple past the cap prune nothing.
        assert_eq!(cut(0, 1, max), None);
        assert_eq!(cut(4, 36, max), None);
        // Version 37 is the first whose cap position (32) is a multiple: 1..=32 go.
        assert_eq!(cut(36, 37, max), Some(TRIM_EVERY));
        assert_eq!(cut(37, 38, max), None);
        // A folded chain that jumps over a multiple prunes up to its last version's cut.
        assert_eq!(cut(60, 75, max), Some(70));
        // Lowering the cap below a long session's length prunes on the next crossing.
        assert_eq!(cut(1_000, 1_033, 1), Some(1_032));
    }
}
