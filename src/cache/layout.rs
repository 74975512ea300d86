//! Which Redis the URL names (one server, one behind Sentinel, or a Cluster) and
//! how keys and notice channels are laid out on it.
//!
//! One Redis (standalone or Sentinel): the key of a session is `{prefix}session:<id>`
//! and every notice goes to the one channel `{prefix}session-updates` (PUBLISH).
//!
//! A Cluster: sessions are spread over [`BUCKETS`] buckets (`id mod BUCKETS`); the
//! bucket is the hash tag of the session's key, `{prefix}session:{<bucket>}:<id>`,
//! and of its notice channel, `{prefix}session-updates:{<bucket>}`. A key and its
//! channel share one slot, so the guarded fill script can publish its notice
//! (SPUBLISH, sharded pub/sub) in the same call, and a notice travels only within
//! its shard, not across the cluster bus. Each replica subscribes to every bucket's
//! channel once (not per watched session), so watchers and this replica's recent
//! copies hear of every write.

use fred::types::config::Config;

/// Buckets of a Cluster layout: enough to spread over many shards, few enough that
/// every replica can subscribe to all of them.
pub const BUCKETS: i64 = 1024;

/// The kind of Redis deployment a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// `redis://` or `rediss://`.
    Standalone,
    /// `redis-sentinel://` or `rediss-sentinel://`: the master of a Sentinel group.
    Sentinel,
    /// `redis-cluster://` or `rediss-cluster://`.
    Cluster,
}

/// A Redis URL in one of the accepted forms, turned into fred's configuration.
///
/// - `redis[s]://[user:password@]host[:port][/db]`
/// - `redis[s]-cluster://[user:password@]host:port[,host:port…]`
/// - `redis[s]-sentinel://[user:password@]host:port[,host:port…]/<master name>`
///   (the sentinels' addresses; fred's own `?sentinelServiceName=` form works too)
pub fn parse(url: &str) -> Result<(Topology, Config), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("must be a URL such as redis://host:6379")?;
    let topology = match scheme {
        "redis" | "rediss" => Topology::Standalone,
        "redis-cluster" | "rediss-cluster" => Topology::Cluster,
        "redis-sentinel" | "rediss-sentinel" => Topology::Sentinel,
        _ => {
            return Err(
                "must start with redis://, rediss://, redis-cluster://, rediss-cluster://, \
                 redis-sentinel:// or rediss-sentinel://"
                    .into(),
            );
        }
    };
    let normalized = match topology {
        Topology::Standalone => url.to_owned(),
        Topology::Cluster => with_nodes(scheme, rest, None)?,
        Topology::Sentinel => {
            let (hosts, master) = match rest.split_once('/') {
                Some((hosts, path)) if !path.is_empty() && !path.starts_with('?') => (hosts, Some(path)),
                _ => (rest, None),
            };
            if master.is_none() && !rest.contains("sentinelServiceName=") {
                return Err(
                    "a Sentinel URL names the master: redis-sentinel://host:26379/<master name>".into(),
                );
            }
            with_nodes(scheme, hosts, master)?
        }
    };
    let config = Config::from_url(&normalized).map_err(|e| e.details().to_string())?;
    if topology == Topology::Cluster && !config.server.is_clustered() {
        return Err("not a cluster URL".into());
    }
    Ok((topology, config))
}

/// `scheme://[auth@]h1:p1,h2:p2[?q]` → fred's `scheme://[auth@]h1:p1?node=h2:p2[&q]`,
/// with a Sentinel master name as `sentinelServiceName`.
fn with_nodes(scheme: &str, rest: &str, master: Option<&str>) -> Result<String, String> {
    let (rest, query) = rest.split_once('?').map_or((rest, None), |(r, q)| (r, Some(q)));
    let (auth, hosts) = rest.rsplit_once('@').map_or((None, rest), |(a, h)| (Some(a), h));
    let mut hosts = hosts.split(',').map(str::trim).filter(|h| !h.is_empty());
    let first = hosts.next().ok_or("names no host")?;
    let mut params: Vec<String> = hosts.map(|h| format!("node={h}")).collect();
    if let Some(master) = master {
        params.push(format!("sentinelServiceName={master}"));
    }
    params.extend(query.map(str::to_owned));
    let auth = auth.map(|a| format!("{a}@")).unwrap_or_default();
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    };
    Ok(format!("{scheme}://{auth}{first}{query}"))
}

/// Where a session's entry and notices live, for one topology.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    prefix: String,
    cluster: bool,
    sentinel: bool,
}

impl Layout {
    pub(super) fn new(topology: Topology, prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            cluster: topology == Topology::Cluster,
            sentinel: topology == Topology::Sentinel,
        }
    }

    /// Whether a replica may become the master this service writes to (a Sentinel
    /// or Cluster failover): then the age of the Redis process says nothing about
    /// how long it has been taking this service's writes.
    pub(super) fn failovers(&self) -> bool {
        self.cluster || self.sentinel
    }

    /// Whether the client reaches its master through Sentinel, which may name a
    /// server that is no longer (or not yet) the master.
    pub(super) fn via_sentinel(&self) -> bool {
        self.sentinel
    }

    fn bucket(id: i64) -> i64 {
        id.rem_euclid(BUCKETS)
    }

    /// The hash holding a session's cached state.
    pub(super) fn key(&self, id: i64) -> String {
        let prefix = &self.prefix;
        if self.cluster {
            format!("{prefix}session:{{{}}}:{id}", Self::bucket(id))
        } else {
            format!("{prefix}session:{id}")
        }
    }

    /// The highest version ever written to the session's hash, kept for longer than
    /// the hash (see `redis.rs`): in the same hash slot on a Cluster.
    pub(super) fn floor_key(&self, id: i64) -> String {
        format!("{}:floor", self.key(id))
    }

    /// The channel a session's notices go to.
    pub(super) fn channel(&self, id: i64) -> String {
        if self.cluster {
            self.bucket_channel(Self::bucket(id))
        } else {
            format!("{}session-updates", self.prefix)
        }
    }

    fn bucket_channel(&self, bucket: i64) -> String {
        format!("{}session-updates:{{{bucket}}}", self.prefix)
    }

    /// Every channel a replica listens to.
    pub(super) fn channels(&self) -> Vec<String> {
        if self.cluster {
            (0..BUCKETS).map(|b| self.bucket_channel(b)).collect()
        } else {
            vec![self.channel(0)]
        }
    }

    /// PUBLISH, or SPUBLISH (sharded) on a Cluster.
    pub(super) fn publish_command(&self) -> &'static str {
        if self.cluster { "SPUBLISH" } else { "PUBLISH" }
    }

    pub(super) fn sharded(&self) -> bool {
        self.cluster
    }

    /// Sessions of one group share a slot, so their write-throughs can share one
    /// script call: all of them on one Redis, one bucket's on a Cluster.
    pub(super) fn group(&self, id: i64) -> i64 {
        if self.cluster { Self::bucket(id) } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use fred::util::redis_keyslot;

    use super::*;

    #[test]
    fn the_accepted_url_forms_parse() {
        let cases = [
            ("redis://127.0.0.1:6379", Topology::Standalone),
            ("redis-cluster://127.0.0.1:7101", Topology::Cluster),
            (
                "redis-cluster://:secret@127.0.0.1:7101,127.0.0.1:7102, 127.0.0.1:7103",
                Topology::Cluster,
            ),
            ("redis-sentinel://127.0.0.1:26379/mymaster", Topology::Sentinel),
            (
                "redis-sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster",
                Topology::Sentinel,
            ),
            (
                "redis-sentinel://127.0.0.1:26379?sentinelServiceName=mymaster",
                Topology::Sentinel,
            ),
        ];
        for (url, topology) in cases {
            let (parsed, config) = parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(parsed, topology, "{url}");
            assert_eq!(
                config.server.is_clustered(),
                topology == Topology::Cluster,
                "{url}"
            );
            assert_eq!(
                config.server.is_sentinel(),
                topology == Topology::Sentinel,
                "{url}"
            );
        }
        let (_, config) = parse("redis-cluster://:secret@h1:7101,h2:7102,h3:7103").unwrap();
        assert_eq!(config.server.hosts().len(), 3);
        assert_eq!(config.password.as_deref(), Some("secret"));
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        assert!(parse("http://x").unwrap_err().contains("redis-cluster://"));
        assert!(
            parse("redis-sentinel://127.0.0.1:26379")
                .unwrap_err()
                .contains("master")
        );
        assert!(parse("127.0.0.1:6379").is_err());
    }

    #[test]
    fn on_a_cluster_a_sessions_key_and_channel_share_one_slot() {
        let layout = Layout::new(Topology::Cluster, "app:");
        for id in [1, 2, 1023, 1024, 987_654_321] {
            let key = layout.key(id);
            let channel = layout.channel(id);
            assert_eq!(
                redis_keyslot(key.as_bytes()),
                redis_keyslot(channel.as_bytes()),
                "{key} {channel}"
            );
            assert_eq!(layout.group(id), Layout::bucket(id));
        }
        assert_eq!(layout.key(1025), "app:session:{1}:1025");
        assert_eq!(layout.channels().len(), BUCKETS as usize);
        assert_eq!(layout.publish_command(), "SPUBLISH");
    }

    #[test]
    fn one_redis_keeps_the_original_names() {
        let layout = Layout::new(Topology::Sentinel, "app:");
        assert_eq!(layout.key(7), "app:session:7");
        assert_eq!(layout.channel(7), "app:session-updates");
        assert_eq!(layout.channels(), vec!["app:session-updates".to_owned()]);
        assert_eq!(layout.publish_command(), "PUBLISH");
    }
}
