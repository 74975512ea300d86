//! The history checker, in the spirit of Elle's list-append: every logical write
//! appends a unique token to a list in its session (UpdateSession to `flags.log`,
//! MutateSession to `flags.inventory.items`), so the final state and every read say
//! exactly which writes took effect, and in which order. What was acknowledged,
//! refused or left in doubt is compared against that.

use std::collections::{HashMap, HashSet};

/// What became of one write, as its client saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Acknowledged: the server answered with the session at this version.
    Acked(i64),
    /// Refused for good: the server said no (conflicts outlasted the retries, the
    /// session moved elsewhere). It must not have taken effect.
    Refused,
    /// No answer (outage, dropped response): it may or may not have taken effect,
    /// but at most once.
    Unknown,
}

/// Which kind of write (the list it appends to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// UpdateSession with `expected_version` through the client's retry loop; appends to `flags.log`.
    Update,
    /// The same with a request id kept across resends until acknowledged.
    Resend,
    /// MutateSession without `expected_version`; appends to `flags.inventory.items`.
    Mutate,
    /// AdvanceSession: moves the node, appends nothing (checked through versions and events).
    Advance,
}

#[derive(Clone, Debug)]
pub struct Write {
    pub client: usize,
    pub session: usize,
    pub kind: Kind,
    /// The appended token (none for an advance).
    pub token: Option<String>,
    pub outcome: Outcome,
}

/// A read's result and what it had to be at least.
#[derive(Clone, Debug)]
pub struct Read {
    pub client: usize,
    pub session: usize,
    pub version: i64,
    pub log: Vec<String>,
    pub items: Vec<String>,
    /// The least version this read may answer with: for a strong read, the highest
    /// version acknowledged to anyone before it was sent; with `min_version`, that.
    pub at_least: i64,
    pub strong: bool,
    /// When it was sent (ms since the run began), to line violations up with faults.
    pub sent_ms: u64,
}

/// The versions one WatchSession subscription delivered, in order (across the
/// client's reconnects with `since_version`).
#[derive(Clone, Debug)]
pub struct Watch {
    pub session: usize,
    pub versions: Vec<i64>,
}

/// A session at the end, read strongly after every fault healed.
#[derive(Clone, Debug)]
pub struct Final {
    pub version: i64,
    pub log: Vec<String>,
    pub items: Vec<(String, i64)>,
    /// (version, action) of every event, oldest first.
    pub events: Vec<(i64, String)>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    pub writes: usize,
    pub acknowledged: usize,
    pub refused: usize,
    pub unknown: usize,
    pub unknown_applied: usize,
    pub reads: usize,
    /// Of which strong (the rest with `min_version`).
    pub strong_reads: usize,
    pub watch_notices: usize,
    pub lost: usize,
    pub duplicated: usize,
    /// Refused (or never written) tokens found in the state.
    pub phantom: usize,
    /// Two acknowledged writes of one session at one version, or appends whose order
    /// disagrees with their acknowledged versions, or a version count that does not add up.
    pub misordered: usize,
    /// Reads older than they may be, or that are not a prefix of the final state, or
    /// that miss a write acknowledged at or below their version; watch streams that
    /// went back.
    pub non_monotonic: usize,
    pub violations: Vec<String>,
    /// When the violating reads were sent (ms since the run began).
    #[serde(skip)]
    pub read_violation_ms: Vec<u64>,
    /// The violating reads: (session, version answered, version it had to be at least).
    #[serde(skip)]
    pub stale_reads: Vec<(usize, i64, i64)>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.lost + self.duplicated + self.phantom + self.misordered + self.non_monotonic == 0
    }

    fn violation(&mut self, what: String) {
        // The first few say what went wrong; the counts say how often.
        if self.violations.len() < 10 {
            self.violations.push(what);
        }
    }
}

/// Checks the whole history against the final state of every session.
pub fn check(finals: &[Final], writes: &[Write], reads: &[Read], watches: &[Watch]) -> Report {
    let mut r = Report {
        writes: writes.len(),
        reads: reads.len(),
        strong_reads: reads.iter().filter(|r| r.strong).count(),
        watch_notices: watches.iter().map(|w| w.versions.len()).sum(),
        ..Report::default()
    };
    for w in writes {
        match w.outcome {
            Outcome::Acked(_) => r.acknowledged += 1,
            Outcome::Refused => r.refused += 1,
            Outcome::Unknown => r.unknown += 1,
        }
    }
    // Where each token ended up: (session, list, position).
    let mut placed: HashMap<&str, Vec<(usize, Kind, usize)>> = HashMap::new();
    for (s, f) in finals.iter().enumerate() {
        for (i, t) in f.log.iter().enumerate() {
            placed.entry(t).or_default().push((s, Kind::Update, i));
        }
        for (i, (t, qty)) in f.items.iter().enumerate() {
            for _ in 0..*qty {
                placed.entry(t).or_default().push((s, Kind::Mutate, i));
            }
        }
    }
    let written: HashMap<&str, &Write> = writes
        .iter()
        .filter_map(|w| w.token.as_deref().map(|t| (t, w)))
        .collect();
    for (token, places) in &placed {
        if places.len() > 1 {
            r.duplicated += places.len() - 1;
            r.violation(format!(
                "token {token} is in the state {} times: {places:?}",
                places.len()
            ));
        }
        match written.get(token) {
            None => {
                r.phantom += 1;
                r.violation(format!("token {token} was never written by any client"));
            }
            Some(w) if w.outcome == Outcome::Refused => {
                r.phantom += 1;
                r.violation(format!("refused write {w:?} took effect"));
            }
            Some(w)
                if places
                    .iter()
                    .any(|(s, kind, _)| *s != w.session || !same_list(*kind, w.kind)) =>
            {
                r.phantom += 1;
                r.violation(format!("write {w:?} landed elsewhere: {places:?}"));
            }
            Some(w) if w.outcome == Outcome::Unknown => r.unknown_applied += 1,
            Some(_) => {}
        }
    }
    for w in writes {
        if let (Some(t), Outcome::Acked(_)) = (&w.token, &w.outcome)
            && !placed.contains_key(t.as_str())
        {
            r.lost += 1;
            r.violation(format!(
                "client {}'s acknowledged write {w:?} is not in the final state",
                w.client
            ));
        }
    }
    check_versions(&mut r, finals, writes);
    check_reads(&mut r, finals, writes, reads);
    for (n, w) in watches.iter().enumerate() {
        if let Some(pair) = w.versions.windows(2).find(|p| p[1] <= p[0]) {
            r.non_monotonic += 1;
            r.violation(format!(
                "watch stream {n} on session {} went from version {} to {}",
                w.session, pair[0], pair[1]
            ));
        }
        let last = finals[w.session].version;
        if let Some(v) = w.versions.iter().find(|v| **v > last) {
            r.non_monotonic += 1;
            r.violation(format!(
                "watch stream {n} saw version {v} beyond the final {last}"
            ));
        }
    }
    r
}

fn same_list(placed: Kind, written: Kind) -> bool {
    match written {
        Kind::Update | Kind::Resend => placed == Kind::Update,
        Kind::Mutate => placed == Kind::Mutate,
        Kind::Advance => false,
    }
}

/// Acknowledged versions are unique per session and agree with the order of the
/// appends; the versions add up to the writes the events record.
fn check_versions(r: &mut Report, finals: &[Final], writes: &[Write]) {
    for (s, f) in finals.iter().enumerate() {
        let mut acked: Vec<(i64, &Write)> = writes
            .iter()
            .filter(|w| w.session == s)
            .filter_map(|w| match w.outcome {
                Outcome::Acked(v) => Some((v, w)),
                _ => None,
            })
            .collect();
        acked.sort_by_key(|(v, _)| *v);
        for pair in acked.windows(2) {
            if pair[0].0 == pair[1].0 {
                r.misordered += 1;
                r.violation(format!(
                    "session {s}: two writes acknowledged at version {}: {:?} and {:?}",
                    pair[0].0, pair[0].1, pair[1].1
                ));
            }
        }
        if let Some((v, w)) = acked.iter().find(|(v, _)| *v > f.version) {
            r.misordered += 1;
            r.violation(format!(
                "session {s}: {w:?} acknowledged at {v}, beyond the final {}",
                f.version
            ));
        }
        // Within each list, positions rise with the acknowledged versions.
        for kind in [Kind::Update, Kind::Mutate] {
            let list: Vec<&str> = match kind {
                Kind::Update => f.log.iter().map(String::as_str).collect(),
                _ => f.items.iter().map(|(t, _)| t.as_str()).collect(),
            };
            let position: HashMap<&str, usize> = list.iter().enumerate().map(|(i, t)| (*t, i)).collect();
            let mut last: Option<(usize, i64)> = None;
            for (v, w) in acked.iter().filter(|(_, w)| same_list(kind, w.kind)) {
                let Some(&p) = w.token.as_deref().and_then(|t| position.get(t)) else {
                    continue;
                };
                if let Some((lp, lv)) = last
                    && p < lp
                {
                    r.misordered += 1;
                    r.violation(format!(
                        "session {s}: {:?} acknowledged at {v} sits before the write acknowledged at {lv}",
                        w.token
                    ));
                }
                last = Some((p, *v));
            }
        }
        // Every version from 1 (create) to the last is one event, and each event is
        // one of the writes the state shows.
        let versions: Vec<i64> = f.events.iter().map(|(v, _)| *v).collect();
        if versions != (1..=f.version).collect::<Vec<_>>() {
            r.misordered += 1;
            r.violation(format!(
                "session {s}: events are not versions 1..={} once each ({} events)",
                f.version,
                versions.len()
            ));
        }
        let count = |action: &str| f.events.iter().filter(|(_, a)| a == action).count();
        let items: i64 = f.items.iter().map(|(_, q)| q).sum();
        if count("update") != f.log.len() || count("mutate") as i64 != items {
            r.misordered += 1;
            r.violation(format!(
                "session {s}: {} update and {} mutate events for {} log entries and {items} items",
                count("update"),
                count("mutate"),
                f.log.len()
            ));
        }
    }
}

/// Reads are prefixes of the final lists, never older than they may be, include
/// every write acknowledged at or below their version and none above it, and never
/// go back in time for their client.
fn check_reads(r: &mut Report, finals: &[Final], writes: &[Write], reads: &[Read]) {
    let mut acked_at: HashMap<&str, i64> = HashMap::new();
    for w in writes {
        if let (Some(t), Outcome::Acked(v)) = (&w.token, &w.outcome) {
            acked_at.insert(t, *v);
        }
    }
    let mut seen: HashMap<(usize, usize), i64> = HashMap::new();
    for (n, read) in reads.iter().enumerate() {
        let f = &finals[read.session];
        let final_items: Vec<&str> = f.items.iter().map(|(t, _)| t.as_str()).collect();
        let read_items: Vec<&str> = read.items.iter().map(String::as_str).collect();
        let mut wrong = Vec::new();
        if read.version < read.at_least {
            wrong.push(format!(
                "version {} below the {} it had to be at least",
                read.version, read.at_least
            ));
        }
        if !f.log.starts_with(&read.log) || !final_items.starts_with(&read_items) {
            wrong.push("not a prefix of the final lists".into());
        }
        let shown: HashSet<&str> = read.log.iter().chain(&read.items).map(String::as_str).collect();
        for w in writes.iter().filter(|w| w.session == read.session) {
            let (Some(t), Outcome::Acked(v)) = (&w.token, &w.outcome) else {
                continue;
            };
            if (*v <= read.version) != shown.contains(t.as_str()) {
                wrong.push(format!("write {t} acknowledged at {v} is wrongly (in)visible"));
                break;
            }
        }
        let last = seen.entry((read.client, read.session)).or_insert(0);
        if read.version < *last {
            wrong.push(format!("went back from version {last} this client had read"));
        }
        *last = (*last).max(read.version);
        if !wrong.is_empty() {
            r.non_monotonic += 1;
            r.read_violation_ms.push(read.sent_ms);
            r.stale_reads.push((read.session, read.version, read.at_least));
            r.violation(format!(
                "{} read {n} by client {} of session {} sent at {} ms answered version {} ({} log entries, {} items): {}",
                if read.strong { "strong" } else { "min_version" },
                read.client,
                read.session,
                read.sent_ms,
                read.version,
                read.log.len(),
                read.items.len(),
                wrong.join("; ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_of(log: &[&str], items: &[(&str, i64)], advances: i64) -> Final {
        let mut events = vec![(1, "create".to_string())];
        let mut v = 1;
        for _ in log {
            v += 1;
            events.push((v, "update".into()));
        }
        for (_, q) in items {
            for _ in 0..*q {
                v += 1;
                events.push((v, "mutate".into()));
            }
        }
        for _ in 0..advances {
            v += 1;
            events.push((v, "advance".into()));
        }
        Final {
            version: v,
            log: log.iter().map(|s| s.to_string()).collect(),
            items: items.iter().map(|(t, q)| (t.to_string(), *q)).collect(),
            events,
        }
    }

    fn write(kind: Kind, token: &str, outcome: Outcome) -> Write {
        Write {
            client: 0,
            session: 0,
            kind,
            token: Some(token.into()),
            outcome,
        }
    }

    #[test]
    fn a_clean_history_passes() {
        let f = final_of(&["a", "b"], &[("m", 1)], 0);
        let writes = [
            write(Kind::Update, "a", Outcome::Acked(2)),
            write(Kind::Resend, "b", Outcome::Unknown),
            write(Kind::Mutate, "m", Outcome::Acked(4)),
            write(Kind::Update, "x", Outcome::Refused),
        ];
        let read = Read {
            client: 1,
            session: 0,
            version: 2,
            log: vec!["a".into()],
            items: vec![],
            at_least: 2,
            strong: true,
            sent_ms: 0,
        };
        let r = check(&[f], &writes, &[read], &[]);
        assert!(r.ok(), "{r:?}");
        assert_eq!(
            (r.acknowledged, r.refused, r.unknown, r.unknown_applied),
            (2, 1, 1, 1)
        );
    }

    #[test]
    fn lost_duplicated_and_phantom_writes_are_caught() {
        let f = final_of(&["a", "a"], &[("m", 2)], 0);
        let writes = [
            write(Kind::Update, "a", Outcome::Acked(2)),
            write(Kind::Mutate, "m", Outcome::Acked(4)),
            write(Kind::Update, "gone", Outcome::Acked(6)),
        ];
        let r = check(&[f], &writes, &[], &[]);
        assert_eq!((r.lost, r.duplicated), (1, 2), "{r:?}");
        let f = final_of(&["x"], &[], 0);
        let r = check(&[f], &[write(Kind::Update, "x", Outcome::Refused)], &[], &[]);
        assert_eq!(r.phantom, 1, "{r:?}");
    }

    #[test]
    fn two_acks_at_one_version_and_misordered_appends_are_caught() {
        let f = final_of(&["a", "b"], &[], 0);
        let same = [
            write(Kind::Update, "a", Outcome::Acked(2)),
            write(Kind::Update, "b", Outcome::Acked(2)),
        ];
        assert!(check(std::slice::from_ref(&f), &same, &[], &[]).misordered >= 1);
        let swapped = [
            write(Kind::Update, "a", Outcome::Acked(3)),
            write(Kind::Update, "b", Outcome::Acked(2)),
        ];
        assert!(check(&[f], &swapped, &[], &[]).misordered >= 1);
    }

    #[test]
    fn stale_and_backward_reads_and_watches_are_caught() {
        let f = final_of(&["a", "b"], &[], 0);
        let writes = [
            write(Kind::Update, "a", Outcome::Acked(2)),
            write(Kind::Update, "b", Outcome::Acked(3)),
        ];
        let read = |version: i64, log: &[&str], at_least: i64| Read {
            client: 0,
            session: 0,
            version,
            log: log.iter().map(|s| s.to_string()).collect(),
            items: vec![],
            at_least,
            strong: true,
            sent_ms: 0,
        };
        // Older than a write acknowledged before it was sent.
        assert_eq!(
            check(std::slice::from_ref(&f), &writes, &[read(2, &["a"], 3)], &[]).non_monotonic,
            1
        );
        // Back in time for one client.
        let back = [read(3, &["a", "b"], 0), read(2, &["a"], 0)];
        assert_eq!(
            check(std::slice::from_ref(&f), &writes, &back, &[]).non_monotonic,
            1
        );
        // A version that does not show what was acknowledged at it.
        assert_eq!(
            check(std::slice::from_ref(&f), &writes, &[read(3, &["a"], 0)], &[]).non_monotonic,
            1
        );
        // Not a prefix.
        assert_eq!(
            check(std::slice::from_ref(&f), &writes, &[read(2, &["b"], 0)], &[]).non_monotonic,
            1
        );
        let watch = Watch {
            session: 0,
            versions: vec![2, 3, 2],
        };
        assert_eq!(check(&[f], &writes, &[], &[watch]).non_monotonic, 1);
    }
}
