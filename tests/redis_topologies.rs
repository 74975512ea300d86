//! The Redis that operators run at scale: a 3-master Cluster and a Sentinel group,
//! each started from `redis-server` by the test, under two service replicas on one
//! PostgreSQL.

mod common;

use std::{
    future::Future,
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    metrics::{metrics_on, scrape, value},
    topologies::{PrivateCluster, PrivateSentinel},
    *,
};
use futures::StreamExt;
use serde_json::json;
use session_service::{
    client::{ClientError, Credentials, SessionClient, new_request_id},
    domain::Session,
    pb,
};

/// Two replicas on one fresh PostgreSQL database, sharing the Redis at `url`.
async fn two_replicas(
    url: String,
    tweak: impl Fn(&mut session_service::config::Settings),
) -> (TestApp, TestApp) {
    let db = TestDb::create(Backend::Postgres).await;
    let mut settings = test_settings(&db);
    metrics_on(&mut settings);
    settings.redis.url = Some(url);
    tweak(&mut settings);
    let db_b = TestDb::same_as(&db);
    let a = TestApp::start(db, settings.clone()).await;
    let b = TestApp::start(db_b, settings).await;
    (a, b)
}

fn cache_hits(metrics: &str) -> f64 {
    value(metrics, "session_cache_lookups_total{outcome=\"hit\"}").unwrap_or(0.0)
}

fn set_counter(id: i64, n: i64, expected: i64) -> pb::UpdateSessionRequest {
    pb::UpdateSessionRequest {
        session_id: id,
        flags: Some(obj(json!({ "counter": n }))),
        expected_version: Some(expected),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_a_cluster_share_the_cache_and_stream_each_others_writes() {
    if !Backend::postgres_available() {
        return;
    }
    let Some(cluster) = PrivateCluster::start(3).await else {
        return;
    };
    // A short TTL: replicas bypass a Redis younger than its distrust window (two TTLs).
    let (a, b) = two_replicas(cluster.url(), |s| s.redis.ttl_secs = 2).await;
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let s = create(&mut cb, 1, json!({})).await;

    // Both replicas listen on the session's shard channel (every bucket's, in fact).
    let channel = format!("session-updates:{{{}}}", s.id % 1024);
    eventually(
        "both replicas subscribed on the shard",
        Duration::from_secs(10),
        || async { (cluster.shard_subscribers(&channel) >= 2).then_some(()) },
    )
    .await;
    let watch = pb::WatchSessionRequest {
        session_id: s.id,
        since_version: s.version,
    };
    let mut stream = ca.watch_session(as_user(1, watch)).await.unwrap().into_inner();
    for n in 1..=5 {
        let written = cb
            .update_session(as_user(1, set_counter(s.id, n, n)))
            .await
            .unwrap()
            .into_inner();
        let streamed = tokio::time::timeout(Duration::from_secs(1), stream.next())
            .await
            .expect("a write on one replica streams on the other within 1 s")
            .unwrap()
            .unwrap();
        assert_eq!(streamed.version, written.version);
        let read = ca
            .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            read.version, written.version,
            "never older than an acknowledged write"
        );
    }

    // Sessions in many buckets (so on every shard): writes on one replica, strong and
    // monotonic reads on the other.
    let mut sessions = Vec::new();
    for _ in 0..24 {
        sessions.push(create(&mut ca, 1, json!({})).await);
    }
    let trusted = cache_hits(&scrape(&b).await);
    eventually(
        "the new cluster's entries are trusted",
        Duration::from_secs(15),
        || {
            let mut cb = cb.clone();
            let id = sessions[0].id;
            let b = &b;
            async move {
                cb.get_session(as_user(1, pb::GetSessionRequest::strong(id)))
                    .await
                    .unwrap();
                (cache_hits(&scrape(b).await) > trusted).then_some(())
            }
        },
    )
    .await;
    let hits_before = cache_hits(&scrape(&b).await);
    for round in 1..=3 {
        for s in &sessions {
            let written = ca
                .update_session(as_user(1, set_counter(s.id, round, round)))
                .await
                .unwrap()
                .into_inner();
            let read = cb
                .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(read.version, written.version, "session {}", s.id);
            assert_eq!(json(&read.flags)["counter"], json!(round));
        }
    }
    let hits = cache_hits(&scrape(&b).await) - hits_before;
    assert!(
        hits >= 72.0,
        "the other replica's reads came from the cluster cache: {hits} hits"
    );
    a.finish().await;
    b.finish().await;
}

/// The per-session facts the checker keeps.
struct Tally {
    /// Increments acknowledged to a writer.
    acknowledged: Vec<AtomicI64>,
    /// The highest version acknowledged (to a writer) or read.
    floor: Vec<AtomicI64>,
    stale_reads: AtomicI64,
    reads: AtomicI64,
    /// The longest time from a call's first failure to its success.
    longest_outage: Mutex<Duration>,
    /// Failed attempts by what failed them.
    failures: Mutex<std::collections::BTreeMap<String, i64>>,
    /// The slowest acknowledged increment, start to acknowledgement.
    slowest: Mutex<Duration>,
}

impl Tally {
    fn failed_for(&self, since: Option<Instant>) {
        if let Some(since) = since {
            let mut longest = self.longest_outage.lock().unwrap();
            *longest = (*longest).max(since.elapsed());
        }
    }
}

fn counter(s: &Session) -> i64 {
    s.flags
        .get("counter")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
}

/// One logical increment, applied exactly once whatever fails: resent with the same
/// request id until acknowledged (the server answers a replay from its record).
async fn increment(c: &SessionClient, id: i64, tally: &Tally, i: usize) {
    let request_id = new_request_id();
    let started = Instant::now();
    let mut failing_since = None;
    loop {
        let result = match c.get(id).await {
            Ok(base) => {
                let bump = |s: &mut Session| {
                    s.flags.insert("counter".into(), json!(counter(s) + 1));
                };
                c.update_idempotent(base, request_id.clone(), bump).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(s) => {
                tally.failed_for(failing_since);
                let mut slowest = tally.slowest.lock().unwrap();
                *slowest = (*slowest).max(started.elapsed());
                drop(slowest);
                tally.acknowledged[i].fetch_add(1, Ordering::SeqCst);
                tally.floor[i].fetch_max(s.version, Ordering::SeqCst);
                return;
            }
            Err(e @ ClientError::Status(_)) if !e.is_transient() => panic!("unexpected refusal: {e}"),
            Err(e) => {
                let kind = e.code().map_or_else(|| e.to_string(), |c| format!("{c:?}"));
                *tally.failures.lock().unwrap().entry(kind).or_default() += 1;
                failing_since.get_or_insert_with(Instant::now);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// A strong read that must not be older than what was acknowledged before it began.
async fn read(c: &SessionClient, id: i64, tally: &Tally, i: usize) {
    let floor = tally.floor[i].load(Ordering::SeqCst);
    if let Ok(s) = c.get(id).await {
        tally.reads.fetch_add(1, Ordering::Relaxed);
        if s.version < floor {
            tally.stale_reads.fetch_add(1, Ordering::SeqCst);
        }
        tally.floor[i].fetch_max(s.version, Ordering::SeqCst);
    }
}

async fn user_client(app: &TestApp) -> SessionClient {
    SessionClient::new(app.channel().await).with_credentials(Credentials::UserId(1))
}

/// What a run under load showed.
struct Outcome {
    acknowledged: i64,
    reads: i64,
    lost: i64,
    duplicated: i64,
    stale: i64,
    longest_outage: Duration,
    failures: std::collections::BTreeMap<String, i64>,
    slowest: Duration,
}

impl Outcome {
    /// Prints the figures (straight to stderr: the harness hides a passing test's
    /// output) and checks them.
    fn report_and_check(&self, what: &str) {
        let _ = writeln!(
            std::io::stderr(),
            "{what}: {} acknowledged increments, {} reads, lost {}, duplicated {}, stale reads {}, \
             longest failed-call window {:?}, failed attempts {:?}, slowest increment {:?}",
            self.acknowledged,
            self.reads,
            self.lost,
            self.duplicated,
            self.stale,
            self.longest_outage,
            self.failures,
            self.slowest,
        );
        assert!(self.acknowledged > 50, "the load ran: {}", self.acknowledged);
        assert_eq!((self.lost, self.duplicated, self.stale), (0, 0, 0), "{what}");
    }
}

/// Writers on one replica and readers of the same sessions on the other (and the
/// reverse) while `fault` runs, then a tally of what was acknowledged against what
/// the database holds.
async fn under_load(
    on_a: &SessionClient,
    on_b: &SessionClient,
    ids: &[i64],
    fault: impl Future<Output = ()>,
) -> Outcome {
    let tally = Arc::new(Tally {
        acknowledged: ids.iter().map(|_| AtomicI64::new(0)).collect(),
        floor: ids.iter().map(|_| AtomicI64::new(1)).collect(),
        stale_reads: AtomicI64::new(0),
        reads: AtomicI64::new(0),
        longest_outage: Mutex::new(Duration::ZERO),
        failures: Mutex::default(),
        slowest: Mutex::new(Duration::ZERO),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (writer, reader) = if worker % 2 == 0 {
            (on_a, on_b)
        } else {
            (on_b, on_a)
        };
        let (writer, reader) = (writer.clone(), reader.clone());
        let (ids, tally, stop) = (ids.to_vec(), tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            // Each worker its own sessions: a failure is the fault's, not contention's.
            let mine: Vec<usize> = (worker..ids.len()).step_by(4).collect();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let i = mine[n % mine.len()];
                increment(&writer, ids[i], &tally, i).await;
                read(&reader, ids[i], &tally, i).await;
                n += 1;
            }
        }));
    }
    fault.await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let (mut lost, mut duplicated, mut acknowledged) = (0, 0, 0);
    for (i, id) in ids.iter().enumerate() {
        let stored = counter(&on_a.get(*id).await.unwrap());
        let acked = tally.acknowledged[i].load(Ordering::SeqCst);
        acknowledged += acked;
        lost += (acked - stored).max(0);
        duplicated += (stored - acked).max(0);
    }
    Outcome {
        acknowledged,
        reads: tally.reads.load(Ordering::Relaxed),
        lost,
        duplicated,
        stale: tally.stale_reads.load(Ordering::SeqCst),
        longest_outage: *tally.longest_outage.lock().unwrap(),
        failures: tally.failures.lock().unwrap().clone(),
        slowest: *tally.slowest.lock().unwrap(),
    }
}

async fn sessions(c: &SessionClient, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let created = c
            .create(session_service::client::create_request(1, 10, &json!({})))
            .await;
        ids.push(created.unwrap().id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_mid_load_loses_and_duplicates_nothing_and_no_read_goes_back() {
    if !Backend::postgres_available() {
        return;
    }
    let Some(group) = PrivateSentinel::start().await else {
        return;
    };
    // A short TTL, so the post-failover distrust ends within the test.
    let (a, b) = two_replicas(group.url(), |s| s.redis.ttl_secs = 2).await;
    let (on_a, on_b) = (user_client(&a).await, user_client(&b).await);
    let ids = sessions(&on_a, 8).await;
    let old_master = group.master();
    let fault = async {
        tokio::time::sleep(Duration::from_millis(1500)).await; // load before the fault
        assert_ne!(group.failover().await, old_master);
        tokio::time::sleep(Duration::from_millis(3000)).await; // and after it, past one TTL
    };
    let outcome = under_load(&on_a, &on_b, &ids, fault).await;
    outcome.report_and_check("sentinel failover mid-load");

    // The new master serves the cache once its entries can be trusted again: after
    // the distrust window (two TTLs here), or, on a replica whose commands failed
    // during the failover, after that outage's length plus confirm_wait and a second
    // (cache/redis.rs), so the wait grows with the outage this run saw, which the
    // slowest increment spans (seen at 8.4 s on a slow host).
    let hits_before = cache_hits(&scrape(&b).await);
    eventually(
        "reads hit the cache on the new master",
        Duration::from_secs(10) + outcome.slowest,
        || async {
            on_b.get(ids[0]).await.unwrap();
            (cache_hits(&scrape(&b).await) > hits_before).then_some(())
        },
    )
    .await;
    a.finish().await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_and_a_whole_cluster_outage_mid_load_cost_latency_never_correctness() {
    if !Backend::postgres_available() {
        return;
    }
    let Some(mut cluster) = PrivateCluster::start(3).await else {
        return;
    };
    let (a, b) = two_replicas(cluster.url(), |s| s.sessions.watch_poll_interval_ms = 200).await;
    let (on_a, on_b) = (user_client(&a).await, user_client(&b).await);
    let ids = sessions(&on_a, 12).await;
    let watched = ids[0];
    let mut stream = on_a.watch(watched, 1).await.unwrap();
    let fault = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // Half of the first master's slots (and their keys) move to the second.
        cluster.reshard(0, 1, 2730);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // Then every node goes away: reads fall back, writes commit, watchers poll.
        cluster.kill_all();
        tokio::time::sleep(Duration::from_millis(2000)).await;
    };
    under_load(&on_a, &on_b, &ids, fault)
        .await
        .report_and_check("resharding, then a whole-cluster outage, mid-load");

    // The watcher kept receiving through the outage (by polling): it reaches the
    // session's final version.
    let last = on_a.get(watched).await.unwrap().version;
    let reached = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(g)) = stream.next().await {
            if g.version >= last {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(reached, Ok(true)), "the watcher reaches version {last}");
    a.finish().await;
    b.finish().await;
}

/// A replica promoted by Sentinel is an old process that may lack writes the old
/// master took after its last replication. A service replica that starts after such
/// a failover cannot tell from the Redis's age, so it reads from the database until
/// the entries written before it started have expired (the soak found one serving
/// such an entry). Here the new master is made to miss version 2 of a session by
/// putting version 1's entry back on it before the failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_started_after_a_sentinel_failover_never_serves_what_the_new_master_missed() {
    use fred::prelude::*;
    if !Backend::postgres_available() {
        return;
    }
    let Some(group) = PrivateSentinel::start().await else {
        return;
    };
    const TTL_SECS: u64 = 4;
    let (a, b_settings, db_b) = {
        let db = TestDb::create(Backend::Postgres).await;
        let mut settings = test_settings(&db);
        metrics_on(&mut settings);
        settings.redis.url = Some(group.url());
        settings.redis.ttl_secs = TTL_SECS;
        let db_b = TestDb::same_as(&db);
        (TestApp::start(db, settings.clone()).await, settings, db_b)
    };
    let on_a = user_client(&a).await;
    let id = sessions(&on_a, 1).await[0];
    let key = format!("session:{id}");
    let replica_port = group.ports.into_iter().find(|p| *p != group.master()).unwrap();
    let replica =
        Builder::from_config(Config::from_url(&format!("redis://127.0.0.1:{replica_port}")).unwrap())
            .build()
            .unwrap();
    replica.init().await.expect("the replica answers");
    let version_1: Value = eventually(
        "version 1 reaches the replica",
        Duration::from_secs(10),
        || async {
            let dump: Value = replica.dump(&key).await.unwrap();
            (!dump.is_null()).then_some(dump)
        },
    )
    .await;
    // Old enough that its age alone would not make a new replica distrust it.
    eventually(
        "the promoted Redis is older than the distrust window",
        Duration::from_secs(20),
        || async {
            let info = common::topologies::cli(replica_port, &["INFO", "server"]);
            let up: u64 = info
                .lines()
                .find_map(|l| l.strip_prefix("uptime_in_seconds:"))
                .and_then(|u| u.trim().parse().ok())
                .unwrap_or(0);
            (up > 2 * TTL_SECS + 1).then_some(())
        },
    )
    .await;
    let mut raw = a.client().await;
    raw.update_session(as_user(1, set_counter(id, 1, 1)))
        .await
        .unwrap();
    eventually(
        "version 2 reaches the replica",
        Duration::from_secs(10),
        || async {
            let v: Option<i64> = replica.hget(&key, "v").await.unwrap();
            (v == Some(2)).then_some(())
        },
    )
    .await;
    // The replica misses version 2, as it would miss a write-through the old master
    // took after the last replication; it lives as long as any entry.
    cli_ok(replica_port, &["CONFIG", "SET", "replica-read-only", "no"]);
    let _: () = replica
        .restore(&key, (TTL_SECS * 1000) as i64, version_1, true, false, None, None)
        .await
        .unwrap();
    assert_eq!(group.failover().await, replica_port);
    // (Through redis-cli: the promotion closed the test's own connection.)
    let stale = common::topologies::cli(replica_port, &["HGET", &key, "v"]);
    assert_eq!(
        stale.trim(),
        "1",
        "the test's premise: the new master holds the old entry"
    );
    let b = TestApp::start(db_b, b_settings).await;
    let read = user_client(&b).await.get(id).await.unwrap();
    assert_eq!(read.version, 2, "never the entry the new master missed");
    a.finish().await;
    b.finish().await;
}

fn cli_ok(port: u16, args: &[&str]) {
    let out = common::topologies::cli(port, args);
    assert!(out.trim() == "OK", "redis-cli {args:?}: {out}");
}
