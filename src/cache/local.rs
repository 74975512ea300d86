//! The embedded default: an in-process LRU cache and in-process notices.

use std::{
    num::NonZeroUsize,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use lru::LruCache;
// tokio's clock (the system's outside tests), so TTL tests run on a paused clock.
use tokio::time::Instant;

use super::{Hub, Lookup, Notice, Published, SessionCache, Subscription};
use crate::{domain::Session, telemetry::Metrics};

#[derive(Clone)]
enum Slot {
    Live(Arc<Session>),
    Tombstone,
}

struct Entry {
    slot: Slot,
    expires: Instant,
}

/// Sessions of this process, bounded in number and age.
pub struct LocalCache {
    entries: Mutex<LruCache<i64, Entry>>,
    ttl: Duration,
    tombstone_ttl: Duration,
    hub: Hub,
    metrics: Arc<Metrics>,
}

impl LocalCache {
    pub fn new(capacity: usize, ttl: Duration, tombstone_ttl: Duration, metrics: Arc<Metrics>) -> Self {
        let capacity = NonZeroUsize::new(capacity.max(1)).expect("max(1) is non-zero");
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
            ttl,
            tombstone_ttl,
            hub: Hub::default(),
            metrics,
        }
    }
}

#[async_trait]
impl SessionCache for LocalCache {
    async fn get(&self, id: i64) -> Lookup {
        let lookup = self.lookup(id);
        let outcome = if lookup == Lookup::Miss { "miss" } else { "hit" };
        self.metrics.cache_outcome(outcome);
        lookup
    }

    async fn fill(&self, session: &Arc<Session>) {
        self.put_if_newer(session);
    }

    fn remember(&self, session: &Arc<Session>) {
        self.put_if_newer(session);
    }

    async fn replayed(&self, session: &Arc<Session>) -> Published {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("cache lock");
        if let Some(e) = entries.get_mut(&session.id)
            && e.expires > now
            && matches!(&e.slot, Slot::Live(held) if held.version < session.version)
        {
            e.slot = Slot::Live(session.clone());
        }
        Published::Visible
    }

    fn recent(&self, id: i64) -> Option<Arc<Session>> {
        // One process holds every copy: the entry itself is the newest state.
        match self.lookup(id) {
            Lookup::Hit(s) => Some(s),
            _ => None,
        }
    }

    async fn tombstone(&self, id: i64) {
        let entry = Entry {
            slot: Slot::Tombstone,
            expires: Instant::now() + self.tombstone_ttl,
        };
        self.entries.lock().expect("cache lock").put(id, entry);
    }

    async fn publish(&self, notice: Notice) {
        self.hub.notify(notice);
    }

    fn subscribe(&self, id: i64) -> Subscription {
        self.hub.subscribe(id)
    }

    fn healthy(&self) -> bool {
        true
    }
}

impl LocalCache {
    fn lookup(&self, id: i64) -> Lookup {
        let mut entries = self.entries.lock().expect("cache lock");
        match entries.get(&id) {
            Some(e) if e.expires > Instant::now() => match &e.slot {
                Slot::Live(s) => Lookup::Hit(s.clone()),
                Slot::Tombstone => Lookup::Deleted,
            },
            Some(_) => {
                entries.pop(&id);
                Lookup::Miss
            }
            None => Lookup::Miss,
        }
    }

    fn put_if_newer(&self, session: &Arc<Session>) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("cache lock");
        let keep = match entries.peek(&session.id) {
            Some(e) if e.expires > now => match &e.slot {
                Slot::Tombstone => true,
                Slot::Live(held) => held.version >= session.version,
            },
            _ => false,
        };
        if !keep {
            let slot = Slot::Live(session.clone());
            entries.put(
                session.id,
                Entry {
                    slot,
                    expires: now + self.ttl,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::sample_at as session;

    fn cache(ttl_ms: u64) -> LocalCache {
        LocalCache::new(
            10,
            Duration::from_millis(ttl_ms),
            Duration::from_millis(ttl_ms),
            Arc::new(Metrics::new()),
        )
    }

    #[tokio::test]
    async fn an_older_fill_never_replaces_a_newer_version() {
        let c = cache(60_000);
        c.fill(&session(6)).await;
        c.fill(&session(5)).await;
        assert!(matches!(c.get(1).await, Lookup::Hit(s) if s.version == 6));
    }

    #[tokio::test(start_paused = true)]
    async fn a_tombstone_blocks_fills_until_it_expires() {
        let c = cache(50);
        c.fill(&session(2)).await;
        c.tombstone(1).await;
        c.fill(&session(2)).await;
        assert_eq!(c.get(1).await, Lookup::Deleted);
        tokio::time::advance(Duration::from_millis(49)).await;
        assert_eq!(c.get(1).await, Lookup::Deleted, "still within its TTL");
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(c.get(1).await, Lookup::Miss);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let c = cache(30);
        c.fill(&session(1)).await;
        tokio::time::advance(Duration::from_millis(29)).await;
        assert!(matches!(c.get(1).await, Lookup::Hit(_)), "still within its TTL");
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(c.get(1).await, Lookup::Miss);
    }
}
