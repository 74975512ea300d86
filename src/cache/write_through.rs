//! Write-throughs after commits, grouped: every committed session queued while the
//! previous group was on its way goes to Redis in ONE script call (guarded fill and
//! watch notice for each), instead of one round trip per write. Group commit hands
//! back many writes at once, so their write-throughs arrive together.
//!
//! A caller still waits for its own write-through before answering: a strong read on
//! another replica must never find Redis older than an acknowledged write.

use std::{
    collections::BTreeMap,
    sync::{Arc, Weak},
};

use fred::{prelude::*, types::scripts::Script};
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use super::{Notice, RedisCache, redis::Sent};
use crate::{domain::Session, wire::pb};

/// The fill script of `redis.rs` for many sessions of one slot, with the same version
/// floors: for session i, KEYS[2i-1] is its hash and KEYS[2i] its floor, and
/// ARGV[4i-3..4i] are the version, the encoded session, the TTL in ms and the notice;
/// the last three ARGV are the floor TTL, PUBLISH or SPUBLISH and the channel. Each
/// hash is set only if its cached version is older or absent and the version is not
/// below the floor (a tombstone's version is larger than any). The group's notices go
/// out as ONE message, space-separated (see [`Notice::decode_all`]): every replica
/// then parses one message per group instead of one per write. Idempotent, so a
/// re-send is harmless.
const FILL_MANY_LUA: &str = r"
local channel = ARGV[#ARGV]
local publish = ARGV[#ARGV - 1]
local floor_ttl = ARGV[#ARGV - 2]
local stored = {}
local notices = {}
for i = 1, #KEYS / 2 do
  local key, floor_key, a = KEYS[2 * i - 1], KEYS[2 * i], (i - 1) * 4
  local v = tonumber(ARGV[a + 1])
  local floor = redis.call('GET', floor_key)
  stored[i] = 0
  if not floor or tonumber(floor) <= v then
    if not floor or tonumber(floor) < v then
      redis.call('SET', floor_key, ARGV[a + 1], 'PX', floor_ttl)
    end
    local held = redis.call('HGET', key, 'v')
    if not held or tonumber(held) < v then
      redis.call('HSET', key, 'v', ARGV[a + 1], 'd', ARGV[a + 2])
      redis.call('PEXPIRE', key, ARGV[a + 3])
      stored[i] = 1
    end
  end
  notices[i] = ARGV[a + 4]
end
redis.call(publish, channel, table.concat(notices, ' '))
return stored
";

/// Most sessions in one script call.
const MAX_GROUP: usize = 128;

type Queued = (Arc<Session>, oneshot::Sender<Sent>);

/// The queue `RedisCache::committed` writes to, and the end [`run`] reads.
pub(super) type Queue = mpsc::UnboundedSender<Queued>;
pub(super) type Receiver = mpsc::UnboundedReceiver<Queued>;

pub(super) fn queue() -> (Queue, Receiver) {
    mpsc::unbounded_channel()
}

/// Sends queued write-throughs until the cache is dropped.
pub(super) async fn run(cache: Weak<RedisCache>, mut rx: Receiver) {
    let script = Arc::new(Script::from_lua(FILL_MANY_LUA));
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let Some(cache) = cache.upgrade() else { return };
        let limit = cache.in_line_limit();
        let mut sent = Box::pin(send_group(cache, script.clone(), group));
        tokio::select! {
            () = &mut sent => {}
            // Redis is not answering and the group waits for it (RedisCache::confirmed):
            // it goes on in a task of its own so the groups behind it are not held up
            // (the script never goes back a version: they may land in any order).
            () = tokio::time::sleep(limit) => {
                tokio::spawn(sent);
            }
        }
    }
}

/// Sends one group (one script call per slot, sent together), then answers its callers.
async fn send_group(cache: Arc<RedisCache>, script: Arc<Script>, group: Vec<Queued>) {
    let mut slots: BTreeMap<i64, Vec<&Arc<Session>>> = BTreeMap::new();
    for (s, _) in &group {
        slots.entry(cache.layout.group(s.id)).or_default().push(s);
    }
    let calls = slots
        .iter()
        .map(|(slot, sessions)| async { (*slot, send_or_mark(&cache, &script, sessions).await) });
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
async fn send_or_mark(cache: &RedisCache, script: &Script, sessions: &[&Arc<Session>]) -> Sent {
    let sent = cache
        .confirmed("write-through", || send(cache, script, sessions))
        .await;
    if sent != Sent::Landed {
        for s in sessions {
            cache.mark_dirty(s.id, Some(Session::clone(s)));
        }
    }
    sent
}

/// One script call for `sessions` (all of one slot); loads the script on NOSCRIPT
/// (first use, restart, flush).
async fn send(cache: &RedisCache, script: &Script, sessions: &[&Arc<Session>]) -> Result<(), Error> {
    let keys = || -> Vec<String> {
        sessions
            .iter()
            .flat_map(|s| [cache.key(s.id), cache.layout.floor_key(s.id)])
            .collect()
    };
    let args = || -> Vec<Value> {
        let mut args: Vec<Value> = Vec::with_capacity(sessions.len() * 4 + 1);
        for s in sessions {
            args.push(s.version.into());
            args.push(Value::Bytes(pb::GameSession::from(&***s).encode_to_vec().into()));
            args.push(cache.ttl_ms.into());
            args.push(Notice::updated(s.id, s.version).encode().into());
        }
        args.push(cache.floor_ttl_ms().into());
        args.push(cache.layout.publish_command().into());
        args.push(cache.layout.channel(sessions[0].id).into());
        args
    };
    let client = cache.client();
    let sent: Result<Vec<i64>, Error> = client.evalsha(script.sha1().clone(), keys(), args()).await;
    match sent {
        Err(e) if e.details().starts_with("NOSCRIPT") => {
            cache.load_script(FILL_MANY_LUA).await?;
            let _: Vec<i64> = client.evalsha(script.sha1().clone(), keys(), args()).await?;
            Ok(())
        }
        other => other.map(|_| ()),
    }
}
