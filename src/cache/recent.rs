//! This replica's newest copies of sessions: filled on every commit and cache fill,
//! dropped as soon as a notice says a newer version exists anywhere.
//!
//! A version names exactly one committed state, so a copy is a correct answer to
//! "the session at version N" on any replica, whatever the others did since. Three
//! uses, and only these: the base of a guarded write whose `expected_version` is
//! the copy's version, reads that name a `min_version`, and strong reads once the
//! shared cache has said its entry is at the copy's version (`lookups.rs`). A strong
//! read never trusts the copy alone: another replica may have acknowledged a newer
//! version whose notice is still on its way.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use lru::LruCache;

use super::Notice;
use crate::domain::Session;

/// What this replica knows of one session.
struct Known {
    /// The newest version any commit, fill or notice has shown (`i64::MAX`: deleted).
    newest: i64,
    /// The state at `newest`, when this replica has it.
    copy: Option<Arc<Session>>,
}

/// Bounded (LRU) per-replica copies; cheap to share.
pub struct Recent {
    known: Mutex<LruCache<i64, Known>>,
}

impl Recent {
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("max(1) is non-zero");
        Self {
            known: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// Keeps `session` unless a newer version (or the deletion) is already known.
    pub fn remember(&self, session: &Arc<Session>) {
        let mut known = self.known.lock().expect("recent lock");
        match known.get_mut(&session.id) {
            Some(k) if k.newest > session.version => {}
            Some(k) if k.newest == session.version && k.copy.is_some() => {}
            _ => {
                let k = Known {
                    newest: session.version,
                    copy: Some(session.clone()),
                };
                known.put(session.id, k);
            }
        }
    }

    /// A notice from any replica: a copy older than it is no longer the newest.
    pub fn saw(&self, notice: Notice) {
        let mut known = self.known.lock().expect("recent lock");
        match known.get_mut(&notice.session_id) {
            Some(k) if k.newest >= notice.version => {}
            Some(k) => {
                k.newest = notice.version;
                k.copy = None;
            }
            // Nothing held: nothing to drop, and no need to start remembering.
            None => {}
        }
    }

    /// The copy, if it is the newest version this replica knows of.
    pub fn get(&self, id: i64) -> Option<Arc<Session>> {
        let mut known = self.known.lock().expect("recent lock");
        known.get(&id).and_then(|k| k.copy.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::sample_at as at;

    #[test]
    fn an_older_copy_never_replaces_a_newer_one() {
        let r = Recent::new(4);
        r.remember(&at(5));
        r.remember(&at(4));
        assert_eq!(r.get(1).unwrap().version, 5);
        r.remember(&at(6));
        assert_eq!(r.get(1).unwrap().version, 6);
    }

    #[test]
    fn a_newer_notice_drops_the_copy_and_blocks_older_fills() {
        let r = Recent::new(4);
        r.remember(&at(5));
        r.saw(Notice::updated(1, 5));
        assert_eq!(
            r.get(1).unwrap().version,
            5,
            "a notice of the held version keeps it"
        );
        r.saw(Notice::updated(1, 7));
        assert!(r.get(1).is_none());
        r.remember(&at(6)); // a read that raced the notice
        assert!(r.get(1).is_none());
        r.remember(&at(7));
        assert_eq!(r.get(1).unwrap().version, 7);
    }

    #[test]
    fn a_deletion_drops_the_copy_for_good() {
        let r = Recent::new(4);
        r.remember(&at(5));
        r.saw(Notice::deleted(1));
        r.remember(&at(9));
        assert!(r.get(1).is_none());
    }

    #[test]
    fn the_least_recently_used_session_goes_first() {
        let r = Recent::new(2);
        for id in 1..=3 {
            r.remember(&Arc::new(Session {
                id,
                ..crate::domain::sample_session()
            }));
        }
        assert!(r.get(1).is_none());
        assert!(r.get(2).is_some() && r.get(3).is_some());
    }
}
