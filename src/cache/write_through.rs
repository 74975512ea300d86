//! Write-throughs after commits, grouped: every committed session queued while the
//! previous group was on its way goes to Redis in ONE call of the fill script
//! (`redis.rs`: the guarded fill of each, and their watch notices as one message),
//! instead of one round trip per write. Group commit hands back many writes at once,
//! so their write-throughs arrive together.
//!
//! A caller still waits for its own write-through before answering: a strong read on
//! another replica must never find Redis older than an acknowledged write.

use std::{
    collections::BTreeMap,
    sync::{Arc, Weak},
};

use tokio::sync::{mpsc, oneshot};

use super::{
    Notice, RedisCache, groups,
    redis::{Fill, Sent},
};
use crate::domain::Session;

/// Most sessions in one script call.
const MAX_GROUP: usize = 128;

type Queued = (Arc<Session>, oneshot::Sender<Sent>);

/// The queue `RedisCache::committed` writes to, and the end [`run`] reads.
pub(super) type Queue = mpsc::UnboundedSender<Queued>;
pub(super) type Receiver = mpsc::UnboundedReceiver<Queued>;

pub(super) fn queue() -> (Queue, Receiver) {
    mpsc::unbounded_channel()
}

/// Sends queued write-throughs until the cache is dropped. A group that waits for a
/// Redis that is not answering (RedisCache::confirmed) goes on in a task of its own
/// so the groups behind it are not held up (the script never goes back a version:
/// they may land in any order).
pub(super) async fn run(cache: Weak<RedisCache>, mut rx: Receiver) {
    while let Some(group) = groups::next(&mut rx, MAX_GROUP).await {
        let Some(cache) = cache.upgrade() else { return };
        let limit = cache.in_line_limit();
        groups::in_line_for(limit, send_group(cache, group)).await;
    }
}

/// Sends one group (one script call per slot, sent together), then answers its callers.
async fn send_group(cache: Arc<RedisCache>, group: Vec<Queued>) {
    let mut slots: BTreeMap<i64, Vec<&Arc<Session>>> = BTreeMap::new();
    for (s, _) in &group {
        slots.entry(cache.layout.group(s.id)).or_default().push(s);
    }
    let calls = slots
        .iter()
        .map(|(slot, sessions)| async { (*slot, send_or_mark(&cache, sessions).await) });
    let sent: BTreeMap<i64, Sent> = futures::future::join_all(calls).await.into_iter().collect();
    drop(slots);
    for (session, done) in group {
        // The caller may have gone: its write is committed regardless.
        let _ = done.send(sent[&cache.layout.group(session.id)]);
    }
}

/// Writes `sessions` through, confirmed (see [`RedisCache::confirmed`]); if that
/// fails, Redis may still hold older versions: reads of them bypass the cache here
/// until repaired.
async fn send_or_mark(cache: &RedisCache, sessions: &[&Arc<Session>]) -> Sent {
    // Encoded once, however often it is sent.
    let fills: Vec<Fill> = sessions
        .iter()
        .map(|s| cache.fill_of(s, Some(Notice::updated(s.id, s.version))))
        .collect();
    let sent = cache.confirmed("write-through", || cache.fill_many(&fills)).await;
    if sent != Sent::Landed {
        for s in sessions {
            cache.mark_dirty(s.id, Some(Session::clone(s)));
        }
    }
    sent
}
