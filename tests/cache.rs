//! The Redis cache: version-guarded fills, tombstones, TTL, hit metrics, outages.

mod common;

use std::{sync::Arc, time::Duration};

use common::{
    metrics::{metrics_on, scrape, value},
    proxy::Proxy,
    redis::{PrivateRedis, shared_redis, unique_prefix},
    *,
};
use serde_json::json;
use session_service::{
    cache::{Lookup, Notice, RedisCache, RedisSettings, SessionCache},
    domain::Session,
    pb,
    telemetry::Metrics,
};

fn settings(url: &str, ttl: Duration) -> RedisSettings {
    RedisSettings {
        url: url.into(),
        key_prefix: unique_prefix(),
        pool_size: 2,
        command_timeout: Duration::from_millis(200),
        confirm_wait: Duration::from_secs(2),
        ttl,
        tombstone_ttl: Duration::from_secs(2),
    }
}

fn session(id: i64, version: i64) -> Arc<Session> {
    let now = chrono::Utc::now();
    Arc::new(Session {
        id,
        user_id: 1,
        scene_id: 1,
        current_node_id: 1,
        world_id: None,
        flags: json!({ "v": version }).as_object().unwrap().clone(),
        relationships: Default::default(),
        world_time: 0.0,
        version,
        created_at: now,
        updated_at: now,
    })
}

async fn cache(ttl: Duration) -> Option<Arc<RedisCache>> {
    let url = shared_redis()?;
    Some(
        RedisCache::start(&settings(&url, ttl), Arc::new(Metrics::new()))
            .await
            .expect("redis cache"),
    )
}

#[tokio::test]
async fn a_slow_reader_filling_an_old_version_never_overwrites_a_newer_one() {
    let Some(c) = cache(Duration::from_secs(60)).await else {
        return;
    };
    c.fill(&session(1, 6)).await; // a writer's write-through
    c.fill(&session(1, 5)).await; // a reader that loaded version 5 before it
    match c.get(1).await {
        Lookup::Hit(s) => assert_eq!((s.version, s.flags["v"].clone()), (6, json!(6))),
        other => panic!("{other:?}"),
    }
    c.fill(&session(1, 7)).await;
    assert!(matches!(c.get(1).await, Lookup::Hit(s) if s.version == 7));
}

#[tokio::test]
async fn a_tombstone_keeps_a_racing_fill_from_resurrecting_a_deleted_session() {
    let Some(c) = cache(Duration::from_secs(60)).await else {
        return;
    };
    c.fill(&session(2, 3)).await;
    c.tombstone(2).await;
    c.fill(&session(2, 3)).await; // a reader that loaded it before the delete
    assert_eq!(c.get(2).await, Lookup::Deleted);
    // The tombstone is short-lived.
    common::eventually("the tombstone expires", Duration::from_secs(5), || async {
        (c.get(2).await == Lookup::Miss).then_some(())
    })
    .await;
}

/// An answer from the idempotency record writes its (possibly old) snapshot through,
/// but never under the session's version floor: once the newer entry has expired,
/// re-creating the old one would serve it to strong reads (the soak found this after
/// a PostgreSQL outage longer than the TTL).
#[tokio::test]
async fn a_replayed_answer_never_recreates_an_expired_entry() {
    let Some(c) = cache(Duration::from_millis(300)).await else {
        return;
    };
    c.fill(&session(7, 2)).await;
    c.replayed(&session(7, 3)).await;
    assert!(
        matches!(c.get(7).await, Lookup::Hit(s) if s.version == 3),
        "an older entry is replaced"
    );
    c.replayed(&session(7, 2)).await;
    assert!(
        matches!(c.get(7).await, Lookup::Hit(s) if s.version == 3),
        "a newer one stays"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.replayed(&session(7, 2)).await;
    assert_eq!(
        c.get(7).await,
        Lookup::Miss,
        "nothing older is created where the entry expired"
    );
    // Nor by a fill that arrives late (one that timed out at the client and ran when
    // Redis caught up); the newest version itself may be cached again.
    c.fill(&session(7, 1)).await;
    assert_eq!(
        c.get(7).await,
        Lookup::Miss,
        "a late fill stays below the version floor"
    );
    c.fill(&session(7, 3)).await;
    assert!(matches!(c.get(7).await, Lookup::Hit(s) if s.version == 3));
}

/// Two replicas' caches on one Redis, sharing a key prefix.
async fn two_replicas() -> Option<(Arc<RedisCache>, Arc<RedisCache>)> {
    let shared = settings(&shared_redis()?, Duration::from_secs(60));
    let start = || RedisCache::start(&shared, Arc::new(Metrics::new()));
    Some((start().await.unwrap(), start().await.unwrap()))
}

/// Two replicas on one Redis. A lookup from a replica holding a copy asks only
/// whether the entry is still at that version: it must still see every newer
/// version and a deletion written by the other; and lookups of many
/// reads sent together (one script call) each get their own session's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_from_a_replica_holding_a_copy_see_what_another_replica_wrote() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    a.fill(&session(1, 1)).await;
    for round in 0..2 {
        // First from the entry (no copy on B yet), then answered by B's own copy.
        match b.get(1).await {
            Lookup::Hit(s) => assert_eq!((s.version, s.flags["v"].clone()), (1, json!(1)), "round {round}"),
            other => panic!("round {round}: {other:?}"),
        }
    }
    a.fill(&session(1, 2)).await;
    assert!(
        matches!(b.get(1).await, Lookup::Hit(s) if s.version == 2 && s.flags["v"] == json!(2)),
        "B's copy at 1 is not the entry at 2"
    );
    a.tombstone(1).await;
    assert_eq!(b.get(1).await, Lookup::Deleted);

    // Many sessions at different versions, looked up at once from B, which holds
    // copies of the even ones only at the version cached and of the others at an
    // older version (or none).
    let ids: Vec<i64> = (10..60).collect();
    for &id in &ids {
        a.fill(&session(id, id % 7 + 2)).await;
        match id % 3 {
            0 => b.remember(&session(id, id % 7 + 2)),
            1 => b.remember(&session(id, 1)),
            _ => {}
        }
    }
    let looked_up = futures::future::join_all(ids.iter().map(|&id| b.get(id))).await;
    for (id, found) in ids.iter().zip(looked_up) {
        assert!(
            matches!(&found, Lookup::Hit(s) if s.id == *id && s.version == id % 7 + 2 && s.flags["v"] == json!(id % 7 + 2)),
            "session {id}: {found:?}"
        );
    }
    assert_eq!(b.get(999).await, Lookup::Miss, "nothing cached");
}

/// A replayed answer acknowledges a version whose first write-through (and notice)
/// may never have gone out: watchers on other replicas hear of it with the replay.
/// A group of commits reaches them too, its notices sent as one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_elsewhere_hear_of_replayed_and_grouped_writes() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let mut watched = b.subscribe(70);
    let mut others = b.subscribe(71);
    // Both subscribed before anything is published (a subscription is in place once
    // Redis relays a notice published after it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        a.publish(Notice::updated(70, 1)).await;
        let wait = tokio::time::timeout(Duration::from_millis(100), watched.receiver.changed());
        if wait.await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never heard A's notices"
        );
    }
    a.replayed(&session(70, 3)).await;
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        while watched.receiver.borrow_and_update().version < 3 {
            watched.receiver.changed().await.unwrap();
        }
    })
    .await;
    assert!(heard.is_ok(), "no notice of the replayed version 3");
    let (x, y) = (session(70, 4), session(71, 9));
    futures::future::join(a.committed(&x), a.committed(&y)).await;
    for (sub, version) in [(&mut watched, 4), (&mut others, 9)] {
        let heard = tokio::time::timeout(Duration::from_secs(5), async {
            while sub.receiver.borrow_and_update().version < version {
                sub.receiver.changed().await.unwrap();
            }
        })
        .await;
        assert!(heard.is_ok(), "no notice of version {version}");
    }
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let Some(c) = cache(Duration::from_millis(300)).await else {
        return;
    };
    c.fill(&session(3, 1)).await;
    assert!(matches!(c.get(3).await, Lookup::Hit(_)));
    common::eventually("the entry expires", Duration::from_secs(5), || async {
        (c.get(3).await == Lookup::Miss).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_failed_write_through_is_never_served_stale_and_is_repaired() {
    let Some(url) = shared_redis() else { return };
    let target: std::net::SocketAddr = url.trim_start_matches("redis://").parse().expect("host:port");
    let proxy = Proxy::start(target).await;
    let via_proxy = format!("redis://{}", proxy.addr);
    let c = RedisCache::start(
        &settings(&via_proxy, Duration::from_secs(60)),
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    c.fill(&session(4, 1)).await;
    assert!(matches!(c.get(4).await, Lookup::Hit(s) if s.version == 1));
    proxy.cut();
    c.fill(&session(4, 2)).await; // the write-through of version 2 fails: Redis keeps version 1
    proxy.restore();
    assert_eq!(c.get(4).await, Lookup::Miss, "not served from the stale entry");
    let mut repaired = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Lookup::Hit(s) = c.get(4).await {
            assert_eq!(s.version, 2, "only ever the repaired version");
            repaired = true;
            break;
        }
    }
    assert!(repaired, "the repair wrote version 2");
}

backend_tests! {
    get_session_is_served_from_redis_when_warm => served_from_redis;
    a_redis_outage_costs_latency_not_correctness => redis_outage;
}

async fn served_from_redis(backend: Backend) {
    let Some(url) = shared_redis() else { return };
    let app = TestApp::spawn_with(backend, |s| {
        s.redis.url = Some(url);
        s.redis.key_prefix = unique_prefix();
        metrics_on(s);
    })
    .await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({"a": 1})).await;
    for _ in 0..5 {
        c.get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
            .await
            .unwrap();
    }
    let m = scrape(&app).await;
    let hits = value(&m, "session_cache_lookups_total{outcome=\"hit\"}").unwrap_or(0.0);
    assert!(hits >= 5.0, "write-through made every read a hit: {hits}\n{m}");
    app.finish().await;
}

async fn redis_outage(backend: Backend) {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let app = TestApp::spawn_with(backend, |s| {
        s.redis.url = Some(redis.url());
        s.redis.command_timeout_ms = 50;
    })
    .await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({"n": 0})).await;
    let update = |n: i64, v: i64| pb::UpdateSessionRequest {
        session_id: s.id,
        flags: Some(obj(json!({ "n": n }))),
        expected_version: Some(v),
        ..Default::default()
    };
    c.update_session(as_user(1, update(1, 1))).await.unwrap();

    redis.kill();
    let started = std::time::Instant::now();
    for n in 2..=5 {
        let u = c
            .update_session(as_user(1, update(n, n)))
            .await
            .expect("writes commit without Redis")
            .into_inner();
        assert_eq!(u.version, n + 1);
        let g = c
            .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
            .await
            .expect("reads fall back");
        assert_eq!(
            g.into_inner().version,
            n + 1,
            "never older than the database acknowledged"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fast fallback: {:?}",
        started.elapsed()
    );
    let mut h = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    let status = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status, 1, "still SERVING");

    redis.restart().await;
    // The service is back on Redis once its subscriber has re-subscribed there.
    let url = redis.url();
    common::eventually(
        "the service reconnects to Redis",
        Duration::from_secs(10),
        || async { (common::redis::subscribers(&url, "session-updates").await >= 1).then_some(()) },
    )
    .await;
    c.update_session(as_user(1, update(6, 6))).await.unwrap();
    let g = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (g.version, json(&g.flags)["n"].clone()),
        (7, json!(6)),
        "nothing stale after recovery"
    );
    app.finish().await;
}

fn signal(name: &str, pid: u32) {
    let sent = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -{name} {pid}");
}

/// A write while Redis is paused (SIGSTOP: alive, its entries kept) is answered only
/// once its write-through has landed, so a strong read on another replica right after
/// the answer cannot find the older entry (the soak found it could).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_during_a_redis_pause_is_answered_after_its_write_through() {
    if !Backend::postgres_available() {
        return;
    }
    let Some(redis) = PrivateRedis::start().await else {
        return;
    };
    let db = TestDb::create(Backend::Postgres).await;
    let mut settings = test_settings(&db);
    metrics_on(&mut settings);
    settings.redis.url = Some(redis.url());
    // The Redis is new: a short TTL, so its distrust window (two TTLs) passes soon.
    settings.redis.ttl_secs = 1;
    let db_b = TestDb::same_as(&db);
    let a = TestApp::start(db, settings.clone()).await;
    let b = TestApp::start(db_b, settings).await;
    let (mut ca, cb) = (a.client().await, b.client().await);
    let s = create(&mut ca, 1, json!({"n": 0})).await;
    let hits =
        || async { value(&scrape(&b).await, "session_cache_lookups_total{outcome=\"hit\"}").unwrap_or(0.0) };
    let mut version = s.version;
    for _ in 0..3 {
        let update = pb::UpdateSessionRequest {
            session_id: s.id,
            flags: Some(obj(json!({ "n": version }))),
            expected_version: Some(version),
            ..Default::default()
        };
        let pid = redis.pid();
        signal("STOP", pid);
        let mut writer = ca.clone();
        let write = tokio::spawn(async move { writer.update_session(as_user(1, update)).await });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!write.is_finished(), "the answer waits for Redis");
        signal("CONT", pid);
        let written = write.await.unwrap().expect("the write commits").into_inner();
        version = written.version;
        let read = common::eventually("b reads through the cache", Duration::from_secs(10), || {
            let mut cb = cb.clone();
            async move {
                let before = hits().await;
                let read = cb
                    .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
                    .await
                    .unwrap()
                    .into_inner();
                (hits().await > before).then_some(read)
            }
        })
        .await;
        assert_eq!(
            read.version, written.version,
            "never older than the acknowledged write"
        );
    }
    a.finish().await;
    b.finish().await;
}

/// A replica that starts while its Redis is down connects once Redis is up (fred's
/// first connection follows the reconnect policy), and its writes then reach Redis:
/// another replica's strong read never finds the entry it filled before the write.
/// The soak found a replica restarted during a Redis outage that never connected and
/// answered its writes without their write-through for the rest of the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_started_while_redis_is_down_writes_through_once_it_is_up() {
    if !Backend::postgres_available() {
        return;
    }
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    redis.kill();
    let db = TestDb::create(Backend::Postgres).await;
    let mut settings = test_settings(&db);
    metrics_on(&mut settings);
    settings.redis.url = Some(redis.url());
    // The Redis will be new to both: a short TTL, so the distrust window passes soon.
    settings.redis.ttl_secs = 1;
    let db_b = TestDb::same_as(&db);
    let a = TestApp::start(db, settings.clone()).await;
    redis.restart().await;
    let b = TestApp::start(db_b, settings).await;
    let url = redis.url();
    common::eventually(
        "both replicas subscribe to the Redis that came up",
        Duration::from_secs(10),
        || async { (common::redis::subscribers(&url, "session-updates").await >= 2).then_some(()) },
    )
    .await;
    let (mut ca, cb) = (a.client().await, b.client().await);
    let s = create(&mut ca, 1, json!({"n": 0})).await;
    let hits =
        || async { value(&scrape(&b).await, "session_cache_lookups_total{outcome=\"hit\"}").unwrap_or(0.0) };
    let mut version = s.version;
    for _ in 0..3 {
        // b serves the current version from Redis (its entry is there and trusted) ...
        common::eventually("b reads through the cache", Duration::from_secs(10), || {
            let mut cb = cb.clone();
            async move {
                let before = hits().await;
                let read = cb
                    .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
                    .await
                    .unwrap()
                    .into_inner();
                (hits().await > before && read.version == version).then_some(())
            }
        })
        .await;
        // ... a writes the next one: b must never serve the entry it had.
        let update = pb::UpdateSessionRequest {
            session_id: s.id,
            flags: Some(obj(json!({ "n": version }))),
            expected_version: Some(version),
            ..Default::default()
        };
        version = ca
            .update_session(as_user(1, update))
            .await
            .unwrap()
            .into_inner()
            .version;
        let read = cb
            .clone()
            .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read.version, version, "never older than a's acknowledged write");
    }
    a.finish().await;
    b.finish().await;
}
