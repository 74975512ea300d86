//! In-process fan-out of update notices: one `watch` channel per watched session.
//!
//! A `watch` channel holds only the newest value, which is exactly the contract of
//! WatchSession: a slow watcher skips versions but always ends at the newest.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

use super::Recent;

/// A session reached `version`, or was deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    pub session_id: i64,
    pub version: i64,
    pub deleted: bool,
}

impl Notice {
    pub fn updated(session_id: i64, version: i64) -> Self {
        Self {
            session_id,
            version,
            deleted: false,
        }
    }

    pub fn deleted(session_id: i64) -> Self {
        Self {
            session_id,
            version: i64::MAX,
            deleted: true,
        }
    }

    /// `"<id>:<version>"` or `"<id>:deleted"`, as published on Redis.
    pub fn encode(&self) -> String {
        if self.deleted {
            format!("{}:deleted", self.session_id)
        } else {
            format!("{}:{}", self.session_id, self.version)
        }
    }

    /// Every notice of a message: one, or a group's, space-separated (a group's
    /// write-throughs publish once). What does not parse is skipped.
    pub fn decode_all(raw: &str) -> impl Iterator<Item = Self> + '_ {
        raw.split(' ').filter_map(Self::decode)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let (id, version) = raw.split_once(':')?;
        let id = id.parse().ok()?;
        if version == "deleted" {
            return Some(Self::deleted(id));
        }
        Some(Self::updated(id, version.parse().ok()?))
    }
}

type Channels = HashMap<i64, watch::Sender<Notice>>;

/// Watchers of this process, by session, and the copies every notice keeps current.
#[derive(Clone)]
pub struct Hub {
    channels: Arc<Mutex<Channels>>,
    recent: Arc<Recent>,
}

/// Sessions whose newest state a replica keeps by default (a few KiB each).
pub const RECENT_COPIES: usize = 4096;

impl Default for Hub {
    fn default() -> Self {
        Self::new(RECENT_COPIES)
    }
}

/// A watcher's receiving end; leaving drops the channel once nobody watches.
pub struct Subscription {
    pub receiver: watch::Receiver<Notice>,
    id: i64,
    hub: Hub,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut channels = self.hub.channels.lock().expect("hub lock");
        // `receiver_count` still counts ours until this drop finishes.
        if channels.get(&self.id).is_some_and(|tx| tx.receiver_count() <= 1) {
            channels.remove(&self.id);
        }
    }
}

impl Hub {
    /// A hub keeping copies of up to `recent_copies` sessions.
    pub fn new(recent_copies: usize) -> Self {
        Self {
            channels: Arc::default(),
            recent: Arc::new(Recent::new(recent_copies)),
        }
    }

    /// This replica's copies, kept current by every notice through [`notify`](Self::notify).
    pub fn recent(&self) -> &Recent {
        &self.recent
    }

    /// Delivers a notice to this process's watchers of the session, if any, and
    /// drops a copy it makes stale. Older notices than the one held are ignored.
    pub fn notify(&self, notice: Notice) {
        self.recent.saw(notice);
        let channels = self.channels.lock().expect("hub lock");
        if let Some(tx) = channels.get(&notice.session_id) {
            tx.send_if_modified(|held| {
                let newer = notice.version > held.version;
                if newer {
                    *held = notice;
                }
                newer
            });
        }
    }

    pub fn subscribe(&self, id: i64) -> Subscription {
        let mut channels = self.channels.lock().expect("hub lock");
        let tx = channels
            .entry(id)
            .or_insert_with(|| watch::channel(Notice::updated(id, 0)).0);
        Subscription {
            receiver: tx.subscribe(),
            id,
            hub: self.clone(),
        }
    }

    /// Sessions watched in this process (for re-subscription and tests).
    pub fn watched(&self) -> usize {
        self.channels.lock().expect("hub lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_through_their_text_form() {
        for n in [Notice::updated(4, 9), Notice::deleted(4)] {
            assert_eq!(Notice::decode(&n.encode()), Some(n));
        }
        assert_eq!(Notice::decode("x:1"), None);
        assert_eq!(Notice::decode("1"), None);
        let group: Vec<Notice> = Notice::decode_all("4:9 5:deleted x 6:1").collect();
        assert_eq!(
            group,
            [Notice::updated(4, 9), Notice::deleted(5), Notice::updated(6, 1)],
            "a group's notices, the unparsable one skipped"
        );
    }

    #[tokio::test]
    async fn watchers_see_only_newer_versions_and_channels_close_with_the_last_watcher() {
        let hub = Hub::default();
        let mut sub = hub.subscribe(1);
        hub.notify(Notice::updated(1, 3));
        hub.notify(Notice::updated(1, 2));
        sub.receiver.changed().await.unwrap();
        assert_eq!(sub.receiver.borrow_and_update().version, 3);
        hub.notify(Notice::updated(2, 5)); // nobody watches 2: dropped
        assert_eq!(hub.watched(), 1);
        drop(sub);
        assert_eq!(hub.watched(), 0);
    }
}
