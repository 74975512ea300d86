//! The shared cache of several replicas: fred over Redis (one server, one behind
//! Sentinel, or a Cluster; see `layout.rs` for the names of keys and channels).
//!
//! A session's key is a hash `{v: version, d: protobuf GameSession}` with a TTL; a
//! tombstone is the same hash with `v` = 2^53 and no data. Notices go over pub/sub
//! (sharded on a Cluster) as `"<id>:<version>"`; a group of write-throughs sends its
//! notices as one message, separated by spaces.
//!
//! After a reconnect to a different Redis process (a failover, a restarted or
//! replaced server: its `run_id` changed, or the address is new) the entries it holds
//! may be older than writes the old one acknowledged: a replica promoted by Sentinel
//! or a Cluster failover may not have received them. So for a window after such a
//! reconnect (one TTL, plus up to 10 s for fills already on their way), reads bypass
//! the cache (the database answers) while write-throughs refresh it: a failover costs
//! latency, never a stale read. A reconnect to the same process (a network blip)
//! changes nothing. A replica that starts next to a Redis younger than that window
//! bypasses it too, until the window has passed since the Redis began: entries
//! filled after a restart may be older than writes acknowledged while it was down,
//! and the replica that would have repaired them may have died since (the soak,
//! tests/soak/, found exactly that). Behind Sentinel or a Cluster the Redis's age
//! says nothing (a replica promoted moments ago is an old process that lacks what
//! the old master took after its last replication), so a replica that starts there
//! bypasses the cache for one window. A master demoted by a failover keeps its
//! clients: a write to it fails READONLY and fred reconnects; a connection that
//! Sentinel routed to a server that is not the master is distrusted and made again.
//!
//! A write is answered after its write-through lands ([`RedisCache::confirmed`]): a
//! strong read on any replica then finds it, or a newer one, or a miss. If Redis stays
//! connected but silent for `confirm_wait`, the committed write is answered
//! UNAVAILABLE (`WRITE_UNCONFIRMED`) and its resend is answered from the idempotency
//! record once the entry is written ([`SessionCache::replayed`]; every write is held
//! to the session's version floor, see [`FILL_LUA`], so an old snapshot cannot go
//! under a newer version that has expired). If
//! Redis dropped the connection, the write is answered and the session marked dirty:
//! the replacement process is empty or distrusted. A replica that saw an outage reads
//! from the database for its length plus `confirm_wait` and a second afterwards, while
//! the replicas holding dirty sessions repair them (within ~100 ms).
//!
//! The soak (tests/soak/) found each of these holes: a paused Redis under a write, a
//! replica started next to a Redis younger than the distrust window, old versions
//! re-creating an expired entry (a replayed answer after a PostgreSQL outage longer
//! than the TTL; a fill that timed out at the client and ran when Redis caught up),
//! a replica started while Redis was down that never connected to it (fred's
//! first connection gave up), answering every write without its write-through, and,
//! behind Sentinel, replicas reading from a promoted replica that missed writes or
//! from a server that was no longer the master.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use fred::types::{InfoKind, config::ReconnectError};
use fred::{
    clients::SubscriberClient,
    prelude::*,
    types::{Message, scripts::Script},
};
use prost::Message as _;
use tokio::{
    sync::{broadcast, oneshot},
    time::Instant,
};

use super::{
    Hub, Lookup, Notice, Published, SessionCache, Subscription,
    layout::{self, Layout},
    lookups::{self, Found},
    write_through,
};
use crate::{
    domain::Session,
    telemetry::{Metrics, logging::redact_url},
    wire::pb,
};

/// The one cache-fill script, for one session or a group of one slot: each entry is
/// set only if the cached version is older or absent, and not below the session's
/// version floor, which it raises. The floor outlives the entry (`FLOOR_TTLS` TTLs):
/// a fill or write-through of an old version that arrives late (a command that timed
/// out at the client still runs when Redis catches up; an answer replayed from the
/// idempotency record carries an old snapshot) cannot re-create an entry under a
/// newer version that has expired. A tombstone carries the largest version, so
/// nothing overwrites it until it expires. Idempotent, so a re-send is harmless.
///
/// For session i, KEYS[2i-1] is its hash and KEYS[2i] its floor, and ARGV[4i-3..4i]
/// are the version, the encoded session, the TTL in ms and the notice ('' for none);
/// the last three ARGV are the floor TTL, PUBLISH or SPUBLISH and the channel. The
/// notices go out as ONE message, space-separated (see [`Notice::decode_all`]), in
/// the same round trip: every replica parses one message per group, not per write.
const FILL_LUA: &str = r"
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
  if ARGV[a + 4] ~= '' then
    notices[#notices + 1] = ARGV[a + 4]
  end
end
if #notices > 0 then
  redis.call(publish, channel, table.concat(notices, ' '))
end
return stored
";

/// One session's part of a [`FILL_LUA`] call.
pub(super) struct Fill {
    pub id: i64,
    pub version: i64,
    /// The encoded `pb::GameSession` (empty for a tombstone); shared, not copied, by
    /// every resend.
    pub data: Bytes,
    pub ttl_ms: i64,
    pub notice: Option<Notice>,
}

/// How many TTLs a session's version floor outlives its entry.
pub(super) const FLOOR_TTLS: i64 = 10;

/// 2^53: larger than any version, exact in Lua's doubles.
const TOMBSTONE_VERSION: i64 = 1 << 53;

/// Connection and cache settings.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://`, `redis-cluster://` or `redis-sentinel://` (and their TLS forms);
    /// see [`layout::parse`].
    pub url: String,
    /// Prepended to every key and channel, so deployments (and tests) can share a
    /// server. No `{` or `}`: on a Cluster the hash tag must be the session's bucket.
    pub key_prefix: String,
    pub pool_size: usize,
    /// A command slower than this is abandoned and the database answers instead.
    pub command_timeout: Duration,
    /// How long a write's answer waits for its write-through to land while Redis is
    /// connected but not answering (see [`RedisCache::confirmed`]).
    pub confirm_wait: Duration,
    pub ttl: Duration,
    pub tombstone_ttl: Duration,
}

/// How a write-through ended (see [`RedisCache::confirmed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    Landed,
    /// Redis dropped the connection: gone, it comes back empty or distrusted.
    Gone,
    /// Redis stayed connected and never confirmed within `confirm_wait`.
    Silent,
}

impl Sent {
    pub(super) fn published(self) -> Published {
        match self {
            Self::Landed | Self::Gone => Published::Visible,
            Self::Silent => Published::Unconfirmed,
        }
    }
}

/// fred-backed [`SessionCache`].
pub struct RedisCache {
    pool: Pool,
    options: Options,
    script: Script,
    pub(super) layout: Layout,
    pub(super) ttl_ms: i64,
    tombstone_ttl_ms: i64,
    confirm_wait: Duration,
    command_timeout: Duration,
    hub: Hub,
    healthy: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    /// Sessions whose write-through failed: Redis may still hold an older version, so
    /// reads of them bypass the cache until a repair (the newest version, or `None`
    /// for a tombstone) has been written.
    dirty: Mutex<HashMap<i64, Option<Session>>>,
    /// Write-throughs after commits, sent in groups (see `write_through.rs`).
    write_through: write_through::Queue,
    /// Lookups of strong reads, sent in groups (see `lookups.rs`).
    lookups: lookups::Queue,
    /// Until when reads bypass the cache after a reconnect (see the module docs).
    /// (Read on every lookup: an atomic, milliseconds after `started`; 0 = trusted.)
    suspect_until_ms: AtomicU64,
    /// When the current outage began (ms after `started`), while `healthy` is false.
    unhealthy_since_ms: AtomicU64,
    started: Instant,
    _subscriber: SubscriberClient,
}

fn builder(mut config: Config, settings: &RedisSettings) -> Result<Builder, Error> {
    // fred gives up on a first connection that fails unless told otherwise: a replica
    // started while Redis was down would never use it (nor hear other replicas'
    // notices), and would answer writes without their write-through for as long as it
    // lives. The first connection follows the reconnect policy like any later one.
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            // A master demoted by a failover keeps its clients' connections: reads
            // would go on from a replica and writes fail READONLY. One cut off from its
            // replicas (min-replicas-to-write) refuses writes with NOREPLICAS. On those
            // errors fred reconnects (through Sentinel, to the new master).
            c.reconnect_errors = vec![
                ReconnectError::ReadOnly,
                ReconnectError::NoReplicas,
                ReconnectError::MasterDown,
                ReconnectError::Loading,
                ReconnectError::ClusterDown,
            ];
        })
        .with_performance_config(|p| p.default_command_timeout = settings.command_timeout)
        // Without a policy, commands after a disconnect would hang forever.
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    Ok(builder)
}

impl RedisCache {
    /// Builds the pool and subscriber and starts connecting. Does not wait for Redis:
    /// a service whose Redis is down starts anyway and uses the database.
    pub async fn start(settings: &RedisSettings, metrics: Arc<Metrics>) -> Result<Arc<Self>, Error> {
        let (topology, config) =
            layout::parse(&settings.url).map_err(|why| Error::new(ErrorKind::Config, why))?;
        if settings.key_prefix.contains(['{', '}']) {
            return Err(Error::new(
                ErrorKind::Config,
                "redis.key_prefix must not contain { or }",
            ));
        }
        let builder = builder(config, settings)?;
        let pool = builder.build_pool(settings.pool_size.max(1))?;
        let subscriber = builder.build_subscriber_client()?;
        pool.connect();
        subscriber.connect();
        let healthy = Arc::new(AtomicBool::new(false));
        let connected = tokio::time::timeout(Duration::from_secs(2), pool.wait_for_connect()).await;
        if matches!(connected, Ok(Ok(()))) {
            healthy.store(true, Ordering::Relaxed);
        } else {
            tracing::warn!(url = %redact_url(&settings.url), "redis not reachable at start; serving from the database until it is");
        }
        let layout = Layout::new(topology, &settings.key_prefix);
        let hub = Hub::default();
        spawn_listener(&subscriber, &layout, hub.clone());
        let (write_through, queued) = write_through::queue();
        let (lookups, asked) = lookups::queue();
        let cache = Self {
            options: Options {
                fail_fast: true,
                timeout: Some(settings.command_timeout),
                ..Default::default()
            },
            script: Script::from_lua(FILL_LUA),
            layout,
            ttl_ms: settings.ttl.as_millis() as i64,
            tombstone_ttl_ms: settings.tombstone_ttl.as_millis() as i64,
            confirm_wait: settings.confirm_wait,
            command_timeout: settings.command_timeout,
            hub,
            healthy,
            metrics,
            pool,
            dirty: Mutex::default(),
            write_through,
            lookups,
            suspect_until_ms: AtomicU64::new(0),
            unhealthy_since_ms: AtomicU64::new(0),
            started: Instant::now(),
            _subscriber: subscriber,
        };
        let cache = Arc::new(cache);
        let known = Arc::new(Mutex::new(HashMap::new()));
        let mut aged = false;
        for client in cache.pool.clients() {
            for server in client.active_connections() {
                if let Some((id, uptime_ms)) = run_id(client, &server, cache.layout.sharded()).await {
                    aged = true;
                    // A Redis younger than the window may hold entries older than
                    // writes acknowledged while it was down (or before a failover),
                    // by replicas that may have died before repairing them: this
                    // replica never saw that, so it goes by the process's age.
                    let window = cache.distrust_window_ms();
                    if uptime_ms < window {
                        cache.distrust_for(window - uptime_ms);
                        tracing::info!(%server, uptime_ms, "redis started recently: reading from the database until its entries can be trusted");
                    }
                    known.lock().expect("run ids").insert(server.clone(), id);
                    if cache.layout.via_sentinel() && !is_master(client).await {
                        // Sentinel named a server that is no longer the master.
                        cache.distrust();
                        let _ = client.force_reconnection().await;
                    }
                }
            }
        }
        if !aged || cache.layout.failovers() {
            // Not connected yet, so the Redis's age is unknown: as if it were new.
            // With failovers its age says nothing either: a replica promoted moments
            // ago is an old process that lacks the writes the old master took after
            // its last replication (the soak found a replica started during a
            // Sentinel failover reading such entries).
            cache.distrust();
        }
        for client in cache.pool.clients() {
            let watch = distrust_after_reconnects(Arc::downgrade(&cache), client.clone(), known.clone());
            tokio::spawn(watch);
        }
        tokio::spawn(maintain(Arc::downgrade(&cache)));
        tokio::spawn(write_through::run(Arc::downgrade(&cache), queued));
        tokio::spawn(lookups::run(Arc::downgrade(&cache), asked));
        Ok(cache)
    }

    pub(super) fn key(&self, id: i64) -> String {
        self.layout.key(id)
    }

    /// True within the distrust window after a reconnect to a new process (or while
    /// the Redis is younger than it): entries may predate acknowledged writes.
    fn suspect(&self) -> bool {
        let until = self.suspect_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if self.elapsed_ms() < until {
            return true;
        }
        // The first reader past the deadline clears it (and says so once).
        if self
            .suspect_until_ms
            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!("cache entries trusted again (the distrust window has passed)");
        }
        false
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// How long entries of a Redis process that is new to this replica may be older
    /// than acknowledged writes: one TTL (entries written before it began are gone by
    /// then), plus the time a fill whose database read began before that may still
    /// arrive (up to another TTL, at most 10 s: a request's life).
    fn distrust_window_ms(&self) -> u64 {
        let ttl = self.ttl_ms.max(0) as u64;
        ttl + ttl.min(10_000)
    }

    /// Reads bypass the cache for the distrust window from now.
    fn distrust(&self) {
        self.distrust_for(self.distrust_window_ms());
    }

    /// Reads bypass the cache for `ms` from now (an earlier, longer distrust stands).
    fn distrust_for(&self, ms: u64) {
        let until = self.elapsed_ms() + ms;
        self.suspect_until_ms.fetch_max(until.max(1), Ordering::Relaxed);
    }

    pub(super) fn client(&self) -> fred::clients::WithOptions<Client> {
        self.pool.next().with_options(&self.options)
    }

    /// The fill script for `fills` (all of one slot), publishing their notices in the
    /// same round trip.
    pub(super) async fn fill_many(&self, fills: &[Fill]) -> Result<(), Error> {
        let Some(first) = fills.first() else {
            return Ok(());
        };
        let keys = || -> Vec<String> {
            fills
                .iter()
                .flat_map(|f| [self.key(f.id), self.layout.floor_key(f.id)])
                .collect()
        };
        let args = || -> Vec<Value> {
            let mut args: Vec<Value> = Vec::with_capacity(fills.len() * 4 + 3);
            for f in fills {
                args.push(f.version.into());
                args.push(Value::Bytes(f.data.clone()));
                args.push(f.ttl_ms.into());
                args.push(f.notice.map(|n| n.encode()).unwrap_or_default().into());
            }
            args.push(self.floor_ttl_ms().into());
            args.push(self.layout.publish_command().into());
            args.push(self.layout.channel(first.id).into());
            args
        };
        let _stored: Vec<i64> = self.eval(&self.script, FILL_LUA, keys, args).await?;
        Ok(())
    }

    /// EVALSHA of `script` (whose source is `lua`) on this cache's client, with its
    /// timeout; loads the script on NOSCRIPT (first use, restart, flush) and tries once
    /// more.
    pub(super) async fn eval<R: FromValue>(
        &self,
        script: &Script,
        lua: &str,
        keys: impl Fn() -> Vec<String>,
        args: impl Fn() -> Vec<Value>,
    ) -> Result<R, Error> {
        let client = self.client();
        match client.evalsha(script.sha1().clone(), keys(), args()).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                self.load_script(lua).await?;
                client.evalsha(script.sha1().clone(), keys(), args()).await
            }
            other => other,
        }
    }

    /// How long a session's version floor is kept (see [`FILL_LUA`]).
    pub(super) fn floor_ttl_ms(&self) -> i64 {
        self.ttl_ms.max(self.tombstone_ttl_ms) * FLOOR_TTLS
    }

    /// Loads a script where EVALSHA will look for it: the one server, or every
    /// primary of a Cluster (a key's script runs on the node that owns its slot).
    pub(super) async fn load_script(&self, lua: &str) -> Result<(), Error> {
        let client = self.client();
        if self.layout.sharded() {
            client.script_load_cluster::<String, _>(lua).await?;
        } else {
            client.script_load::<String, _>(lua).await?;
        }
        Ok(())
    }

    /// Counts a failed command; the first failure of an outage is logged as a warning.
    pub(super) fn failed(&self, what: &str, error: &Error) {
        self.metrics.cache_outcome("bypass");
        if self.healthy.swap(false, Ordering::Relaxed) {
            self.unhealthy_since_ms
                .store(self.elapsed_ms(), Ordering::Relaxed);
            tracing::warn!(%error, operation = what, "redis unavailable: bypassing the cache until it recovers");
        }
    }

    /// Counts a command that Redis answered. After an outage, reads still bypass the
    /// cache for as long as it lasted plus `confirm_wait` and a second: a write
    /// answered on another replica when its write-through gave up (see
    /// [`confirmed`](Self::confirmed)) left an older entry there that its replica
    /// repairs as soon as it sees Redis again (within ~100 ms); until then only this
    /// replica's own dirty marks would protect its reads, and it has none for writes
    /// made elsewhere.
    pub(super) fn succeeded(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            let outage = self
                .elapsed_ms()
                .saturating_sub(self.unhealthy_since_ms.load(Ordering::Relaxed));
            self.distrust_for(outage + self.confirm_wait.as_millis() as u64 + 1000);
            tracing::info!(
                outage_ms = outage,
                "redis reachable again: cache back in use after a grace period"
            );
        }
    }

    /// How long the write-through and lookup queues wait for a group in line before
    /// letting it finish in a task of its own (a healthy round trip is far shorter).
    pub(super) fn in_line_limit(&self) -> Duration {
        self.command_timeout * 2
    }

    /// Sends a write-through (`send`) again until it lands, for up to `confirm_wait`,
    /// while Redis is connected. An acknowledged write must not leave an older entry
    /// that other replicas would serve to strong reads. A Redis that times out while
    /// connected may be alive with its entries (paused, overloaded, cut off from this
    /// replica only): `Unconfirmed` after the wait. One that dropped the connection is
    /// gone, and the process that replaces it starts empty or is distrusted for a
    /// window (see the module docs): `Visible`, nothing to wait for. Either way the
    /// caller marks what did not land dirty, for the repair.
    pub(super) async fn confirmed<F, Fut>(&self, what: &str, mut send: F) -> Sent
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>>,
    {
        let deadline = Instant::now() + self.confirm_wait;
        loop {
            match send().await {
                Ok(()) => {
                    self.succeeded();
                    return Sent::Landed;
                }
                Err(error) => {
                    self.failed(what, &error);
                    if !self.client().is_connected() {
                        tracing::warn!(operation = what, %error, "redis disconnected: answered without the write-through (the session is repaired later)");
                        return Sent::Gone;
                    }
                    if Instant::now() >= deadline {
                        tracing::warn!(operation = what, %error, "redis silent past confirm_wait: the write is answered UNAVAILABLE");
                        return Sent::Silent;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// The fill script for a session (or, with `None`, a tombstone).
    async fn write_entry(
        &self,
        id: i64,
        entry: Option<&Session>,
        notice: Option<Notice>,
    ) -> Result<(), Error> {
        let fill = match entry {
            Some(s) => self.fill_of(s, notice),
            None => Fill {
                id,
                version: TOMBSTONE_VERSION,
                data: Bytes::new(),
                ttl_ms: self.tombstone_ttl_ms,
                notice,
            },
        };
        self.fill_many(&[fill]).await
    }

    /// A session's part of a fill, with its TTL.
    pub(super) fn fill_of(&self, s: &Session, notice: Option<Notice>) -> Fill {
        Fill {
            id: s.id,
            version: s.version,
            data: pb::GameSession::from(s).encode_to_vec().into(),
            ttl_ms: self.ttl_ms,
            notice,
        }
    }

    /// Runs the fill script for `repair` (a session, or `None` for a tombstone),
    /// publishing `notice` with it. On failure the session is marked dirty, so reads
    /// bypass the possibly stale entry until [`repair`](Self::repair) writes it.
    async fn store(&self, id: i64, repair: Option<&Session>, notice: Option<Notice>, what: &str) {
        match self.write_entry(id, repair, notice).await {
            Ok(_) => self.succeeded(),
            Err(error) => {
                self.failed(what, &error);
                self.mark_dirty(id, repair.cloned());
            }
        }
    }

    pub(super) fn mark_dirty(&self, id: i64, repair: Option<Session>) {
        let mut dirty = self.dirty.lock().expect("dirty lock");
        let newer = match (dirty.get(&id), &repair) {
            (Some(Some(held)), Some(s)) => s.version > held.version,
            (Some(None), _) => false, // a pending tombstone wins
            _ => true,
        };
        if newer {
            dirty.insert(id, repair);
        }
    }

    fn is_dirty(&self, id: i64) -> bool {
        self.dirty.lock().expect("dirty lock").contains_key(&id)
    }

    /// Writes the pending repairs; stops at the first failure.
    async fn repair(&self) {
        let pending: Vec<(i64, Option<Session>)> = self
            .dirty
            .lock()
            .expect("dirty lock")
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (id, repair) in pending {
            if self.write_entry(id, repair.as_ref(), None).await.is_err() {
                return;
            }
            let version = |r: &Option<Session>| r.as_ref().map(|s| s.version);
            let mut dirty = self.dirty.lock().expect("dirty lock");
            if dirty.get(&id).map(version) == Some(version(&repair)) {
                dirty.remove(&id);
            }
        }
    }
}

/// Every 100 ms: while unhealthy, ping (recovery is noticed without traffic); while
/// repairs are pending, write them (soon after Redis answers again: other replicas
/// bypass the cache for a grace period only). Ends when the cache is dropped.
async fn maintain(cache: Weak<RedisCache>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let Some(cache) = cache.upgrade() else { return };
        if !cache.healthy.load(Ordering::Relaxed) {
            let ping: Result<String, _> = cache.client().ping(None).await;
            if ping.is_err() {
                continue;
            }
            cache.succeeded();
        }
        if cache.dirty.lock().expect("dirty lock").is_empty() {
            continue;
        }
        cache.repair().await;
    }
}

/// Feeds notices from Redis to this process's watchers; fred re-subscribes after
/// reconnects (and re-sends sharded subscriptions to the slots' new owners).
fn spawn_listener(subscriber: &SubscriberClient, layout: &Layout, hub: Hub) {
    let mut messages = subscriber.message_rx();
    // Re-subscribes after reconnects; runs as long as the client lives.
    drop(subscriber.manage_subscriptions());
    let sub = subscriber.clone();
    let channels = layout.channels();
    let sharded = layout.sharded();
    tokio::spawn(async move {
        subscribe_all(&sub, channels, sharded).await;
        loop {
            match messages.recv().await {
                Ok(Message { value, .. }) => {
                    if let Some(raw) = value.as_str() {
                        Notice::decode_all(&raw).for_each(|notice| hub.notify(notice));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// Subscribes to `channels`, retrying until every one is in place. fred re-sends a
/// subscription after a reconnect only once Redis has accepted it, so one made while
/// Redis is unreachable (a replica started during an outage) must be retried here.
/// Sharded ones go each alone (one slot per SSUBSCRIBE).
async fn subscribe_all(sub: &SubscriberClient, channels: Vec<String>, sharded: bool) {
    let mut pending = channels;
    let mut delay = Duration::from_millis(100);
    while !pending.is_empty() {
        let mut failed = Vec::new();
        if sharded {
            for channel in pending {
                if sub.ssubscribe(channel.clone()).await.is_err() {
                    failed.push(channel);
                }
            }
        } else if sub.subscribe(pending.clone()).await.is_err() {
            failed = pending;
        }
        if !failed.is_empty() {
            tracing::warn!(channels = failed.len(), "redis subscribe failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        pending = failed;
    }
}

/// The identity of the Redis process at `server` (`run_id` of INFO server).
/// The `run_id` of the Redis process at `server` and how long it has been up (ms).
async fn run_id(client: &Client, server: &Server, sharded: bool) -> Option<(String, u64)> {
    let info: Result<String, Error> = if sharded {
        client
            .with_cluster_node(server.clone())
            .info(Some(InfoKind::Server))
            .await
    } else {
        client.info(Some(InfoKind::Server)).await
    };
    let info = info.ok()?;
    let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let id = field("run_id:")?.to_owned();
    let uptime_secs: u64 = field("uptime_in_seconds:")
        .and_then(|u| u.parse().ok())
        .unwrap_or(0);
    Some((id, uptime_secs * 1000))
}

/// Marks the cache suspect for the distrust window whenever `client` connects to a Redis process
/// other than the one it knew at that address (see the module docs). `known` holds
/// the `run_id` last seen at each address, shared by the pool's clients.
async fn distrust_after_reconnects(
    cache: Weak<RedisCache>,
    client: Client,
    known: Arc<Mutex<HashMap<Server, String>>>,
) {
    let mut reconnects = client.reconnect_rx();
    loop {
        let server = match reconnects.recv().await {
            Ok(server) => server,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(cache) = cache.upgrade() else { return };
        let now = run_id(&client, &server, cache.layout.sharded())
            .await
            .map(|(id, _)| id);
        let before = match &now {
            Some(id) => known.lock().expect("run ids").insert(server.clone(), id.clone()),
            None => None,
        };
        if cache.layout.via_sentinel() && !is_master(&client).await {
            // Sentinel named a server that is not the master (it could not be
            // reached, or a failover is under way, and fred fell back to the last
            // address it knew): its entries may be behind. Ask again shortly.
            cache.distrust();
            tracing::warn!(%server, "connected to a redis that is not the master: reconnecting through sentinel");
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = client.force_reconnection().await;
            continue;
        }
        if now.is_some() && before == now {
            continue; // the same process: its entries are as good as before
        }
        cache.distrust();
        tracing::warn!(%server, "connected to a different redis process: reading from the database until its entries can be trusted");
    }
}

/// Whether `client`'s server says it is a master (INFO replication). An unanswered
/// question counts as yes: an unreachable Redis is handled as an outage.
async fn is_master(client: &Client) -> bool {
    match client.info::<String>(Some(InfoKind::Replication)).await {
        Ok(info) => info.lines().any(|l| l.trim() == "role:master"),
        Err(_) => true,
    }
}

#[async_trait]
impl SessionCache for RedisCache {
    async fn get(&self, id: i64) -> Lookup {
        if self.is_dirty(id) || self.suspect() {
            self.metrics.cache_outcome("bypass");
            return Lookup::Miss;
        }
        // With a copy here, Redis only has to say whether it is still the entry's
        // version (see `lookups.rs`); lookups of concurrent reads share a round trip.
        let held = self.hub.recent().get(id);
        let (answer, found) = oneshot::channel();
        let asked = held.as_ref().map_or(0, |s| s.version);
        if self.lookups.send((id, asked, answer)).is_err() {
            return Lookup::Miss;
        }
        let found = match tokio::time::timeout(self.command_timeout, found).await {
            Ok(Ok(found)) => found,
            // The lookup task is gone (shutting down).
            Ok(Err(_)) => return Lookup::Miss,
            Err(_) => Err(Error::new(ErrorKind::Timeout, "cache lookup timed out")),
        };
        match found {
            Err(error) => {
                self.failed("get", &error);
                Lookup::Miss
            }
            Ok(Found::Same) => {
                self.succeeded();
                match held {
                    Some(s) => {
                        self.metrics.cache_outcome("hit");
                        Lookup::Hit(s)
                    }
                    None => Lookup::Miss,
                }
            }
            Ok(Found::Entry(TOMBSTONE_VERSION, _)) => {
                self.succeeded();
                self.metrics.cache_outcome("hit");
                Lookup::Deleted
            }
            Ok(Found::Entry(_, Some(data))) => {
                self.succeeded();
                let decoded = pb::GameSession::decode(data)
                    .ok()
                    .and_then(|g| Session::try_from(g).ok());
                match decoded {
                    Some(s) => {
                        self.metrics.cache_outcome("hit");
                        let s = Arc::new(s);
                        self.hub.recent().remember(&s);
                        Lookup::Hit(s)
                    }
                    None => {
                        tracing::warn!(session_id = id, "undecodable cache entry ignored");
                        self.metrics.cache_outcome("miss");
                        Lookup::Miss
                    }
                }
            }
            Ok(Found::Entry(_, None) | Found::Nothing) => {
                self.succeeded();
                self.metrics.cache_outcome("miss");
                Lookup::Miss
            }
        }
    }

    async fn fill(&self, session: &Arc<Session>) {
        self.hub.recent().remember(session);
        self.store(session.id, Some(session), None, "fill").await;
    }

    fn recent(&self, id: i64) -> Option<Arc<Session>> {
        self.hub.recent().get(id)
    }

    fn remember(&self, session: &Arc<Session>) {
        self.hub.recent().remember(session);
    }

    async fn tombstone(&self, id: i64) {
        self.store(id, None, None, "tombstone").await;
    }

    async fn publish(&self, notice: Notice) {
        // Local watchers first: they need not wait for the round trip through Redis.
        self.hub.notify(notice);
        let channel = self.layout.channel(notice.session_id);
        let client = self.client();
        let sent: Result<i64, _> = if self.layout.sharded() {
            client.spublish(channel, notice.encode()).await
        } else {
            client.publish(channel, notice.encode()).await
        };
        if let Err(error) = sent {
            self.failed("publish", &error);
        }
    }

    async fn committed(&self, session: &Arc<Session>) -> Published {
        let notice = Notice::updated(session.id, session.version);
        // The copy first: the notice then finds it current and keeps it.
        self.hub.recent().remember(session);
        self.hub.notify(notice);
        let (done, written) = tokio::sync::oneshot::channel();
        if self.write_through.send((session.clone(), done)).is_err() {
            // Shutting down: the write is committed and this replica answers no more reads.
            return Published::Visible;
        }
        written.await.map_or(Published::Visible, Sent::published)
    }

    async fn replayed(&self, session: &Arc<Session>) -> Published {
        self.hub.recent().remember(session);
        let sent = self
            .confirmed("replay", || async {
                // With its notice: the first attempt's write-through (and notice) may
                // never have gone out, and watchers elsewhere wait for it.
                let notice = Notice::updated(session.id, session.version);
                self.write_entry(session.id, Some(session), Some(notice)).await
            })
            .await;
        if sent != Sent::Landed {
            self.mark_dirty(session.id, Some(Session::clone(session)));
        }
        sent.published()
    }

    async fn deleted(&self, id: i64) -> Published {
        let notice = Notice::deleted(id);
        self.hub.notify(notice);
        // An acknowledged delete, like a write: confirmed before the answer.
        let sent = self.confirmed("tombstone", || async {
            self.write_entry(id, None, Some(notice)).await
        });
        let sent = sent.await;
        if sent != Sent::Landed {
            self.mark_dirty(id, None);
        }
        sent.published()
    }

    fn subscribe(&self, id: i64) -> Subscription {
        self.hub.subscribe(id)
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}
