//! The reliability suite (slow: `#[ignore]`, run by `.ci/run` and by
//! scripts/reliability.sh, which writes RELIABILITY.md from the figures).

mod common;

use std::{
    collections::HashMap,
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    dropper::{Drop, Dropper},
    pgcluster::PrivateCluster,
    redis::{PrivateRedis, shared_redis, unique_prefix},
    report::record,
    *,
};
use serde_json::json;
use session_service::{
    client::{ClientError, Credentials, RetryPolicy, SessionClient, create_request, new_request_id, ops},
    domain::Session,
    pb,
};
use tonic::transport::Channel;

fn counter(s: &Session) -> i64 {
    s.flags["counter"].as_i64().unwrap_or(0)
}

fn bump(s: &mut Session) {
    let n = counter(s);
    s.flags.insert("counter".into(), json!(n + 1));
}

async fn client_at(url: &str) -> SessionClient {
    let channel = Channel::from_shared(url.to_string()).unwrap().connect_lazy();
    SessionClient::new(channel).with_credentials(Credentials::UserId(1))
}

/// One logical increment, retried with the same request id until acknowledged:
/// however often answers are lost or the server dies, it applies exactly once.
async fn increment_exactly_once(c: &SessionClient, id: i64, deadline: Instant) -> u32 {
    let request_id = new_request_id();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = match c.get(id).await {
            Ok(base) => c
                .update_idempotent(base, request_id.clone(), bump)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return attempts,
            Err(e) if Instant::now() > deadline => panic!("increment still failing at the deadline: {e}"),
            Err(e @ ClientError::Status(_)) if !e.is_transient() => panic!("unexpected refusal: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Versions 1..=last, each exactly once, in the session's event history.
async fn history_is_gapless(c: &SessionClient, id: i64, last: i64) -> bool {
    let mut stub = c.stub();
    let mut versions = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListSessionEventsRequest {
            session_id: id,
            page_size: 1000,
            page_token: token,
        };
        let page = stub
            .list_session_events(c.request(req))
            .await
            .unwrap()
            .into_inner();
        versions.extend(page.events.iter().map(|e| e.version));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    versions == (1..=last).collect::<Vec<_>>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: reliability suite"]
async fn lost_update_checker_every_acknowledged_increment_is_kept() {
    if !Backend::postgres_available() {
        return;
    }
    const CLIENTS: usize = 12;
    const EACH: usize = 40;
    const SESSIONS: usize = 4;
    let app = TestApp::spawn(Backend::Postgres).await;
    let c = client_at(&app.url()).await;
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        ids.push(
            c.create(create_request(1, 1, &json!({"counter": 0})))
                .await
                .unwrap()
                .id,
        );
    }
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..SESSIONS).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::new();
    for k in 0..CLIENTS {
        let c = client_at(&app.url()).await;
        let (ids, acked) = (ids.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let (mut exhausted, mut stats) = (0, (0, 0));
            for m in 0..EACH {
                let s = (k + m) % SESSIONS;
                match c.update_with_retry(ids[s], bump).await {
                    Ok(_) => {
                        acked[s].fetch_add(1, Ordering::SeqCst);
                    }
                    // Conflicts outlasted the retries: not applied, not acknowledged.
                    Err(ClientError::Exhausted { .. }) => exhausted += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            stats.0 += c.stats().conflicts;
            stats.1 += c.stats().retries;
            (exhausted, stats)
        }));
    }
    let (mut exhausted, mut conflicts, mut retries) = (0, 0, 0);
    for t in tasks {
        let (e, (c, r)) = t.await.unwrap();
        exhausted += e;
        conflicts += c;
        retries += r;
    }
    let mut lost = 0;
    let mut duplicated = 0;
    let mut gapless = true;
    for (s, id) in ids.iter().enumerate() {
        let end = c.get(*id).await.unwrap();
        let acks = acked[s].load(Ordering::SeqCst) as i64;
        lost += (acks - counter(&end)).max(0);
        duplicated += (counter(&end) - acks).max(0);
        assert_eq!(
            counter(&end),
            acks,
            "session {id}: counter equals the acknowledged increments"
        );
        assert_eq!(
            end.version,
            1 + acks,
            "session {id}: one version per acknowledged increment"
        );
        gapless &= history_is_gapless(&c, *id, end.version).await;
    }
    assert!(
        gapless,
        "every history runs 1..=version without gaps or duplicates"
    );
    let acked_total: u64 = acked.iter().map(|a| a.load(Ordering::SeqCst)).sum();
    record(
        "lost_update_checker",
        json!({
            "clients": CLIENTS, "increments_each": EACH, "sessions": SESSIONS,
            "requests_sent": (CLIENTS * EACH) as u64 + retries + (CLIENTS * EACH) as u64,
            "conflicts": conflicts, "retries": retries, "exhausted": exhausted,
            "acknowledged": acked_total, "lost": lost, "duplicated": duplicated,
            "histories_gapless": gapless,
        }),
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: reliability suite"]
async fn dropping_a_fifth_of_responses_loses_and_duplicates_nothing() {
    if !Backend::postgres_available() {
        return;
    }
    const WORKERS: usize = 4;
    const EACH: usize = 100;
    let app = TestApp::spawn(Backend::Postgres).await;
    let (proxy, dropper) =
        Dropper::start_with(app.channel().await, Drop::Random { percent: 20, seed: 7 }).await;
    let direct = client_at(&app.url()).await;
    let s = direct
        .create(create_request(1, 1, &json!({"counter": 0})))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let c = client_at(&format!("http://{proxy}"))
            .await
            .with_retry_policy(RetryPolicy {
                base: Duration::from_millis(5),
                ..Default::default()
            });
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = 0;
            for _ in 0..EACH {
                increment_exactly_once(&c, s.id, deadline).await;
                acknowledged += 1;
            }
            acknowledged
        }));
    }
    let mut acknowledged = 0;
    for t in tasks {
        acknowledged += t.await.unwrap();
    }
    let end = direct.get(s.id).await.unwrap();
    let applied = counter(&end);
    assert_eq!(applied, acknowledged, "none lost, none applied twice");
    assert_eq!(end.version, 1 + applied);
    assert!(history_is_gapless(&direct, s.id, end.version).await);
    record(
        "response_drop_proxy",
        json!({
            "requests_sent": dropper.calls.load(Ordering::SeqCst),
            "responses_dropped": dropper.dropped.load(Ordering::SeqCst),
            "acknowledged": acknowledged, "applied": applied,
            "lost": (acknowledged - applied).max(0), "duplicated": (applied - acknowledged).max(0),
        }),
    );
    app.finish().await;
}

/// The real binary, as a child process we can kill -9.
fn spawn_server(db_url: &str, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_session-service"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("server binary starts")
}

async fn wait_listening(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not listen on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: reliability suite"]
async fn kill_dash_nine_mid_load_keeps_every_acknowledged_write() {
    if !Backend::postgres_available() {
        return;
    }
    let mut db = TestDb::create(Backend::Postgres).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = spawn_server(&db.url, port);
    wait_listening(port).await;
    let url = format!("http://127.0.0.1:{port}");
    let setup = client_at(&url).await;
    let s = setup
        .create(create_request(1, 1, &json!({"counter": 0})))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let c = client_at(&url).await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let (mut acknowledged, mut attempts) = (0i64, 0u32);
            while !stop.load(Ordering::SeqCst) {
                attempts += increment_exactly_once(&c, s.id, deadline).await;
                acknowledged += 1;
            }
            (acknowledged, attempts)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = setup.get(s.id).await.map(|s| counter(&s)).unwrap_or(0);
    server.kill().expect("kill -9");
    let _ = server.wait();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut server = spawn_server(&db.url, port);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut acknowledged, mut attempts) = (0, 0);
    for t in tasks {
        let (a, n) = t.await.unwrap();
        acknowledged += a;
        attempts += n;
    }
    let end = setup.get(s.id).await.unwrap();
    assert!(before_kill > 0, "load was running when the server died");
    assert_eq!(
        counter(&end),
        acknowledged,
        "every acknowledged write survived, none applied twice"
    );
    assert_eq!(end.version, 1 + acknowledged);
    record(
        "crash_kill_9",
        json!({
            "acknowledged": acknowledged, "counter_before_kill": before_kill, "final_counter": counter(&end),
            "attempts": attempts, "lost": (acknowledged - counter(&end)).max(0),
            "duplicated": (counter(&end) - acknowledged).max(0),
        }),
    );
    let _ = server.kill();
    let _ = server.wait();
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: reliability suite"]
async fn redis_killed_and_restarted_mid_load_fails_nothing_and_never_goes_back_in_time() {
    if !Backend::postgres_available() {
        return;
    }
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let app = TestApp::spawn_with(Backend::Postgres, |s| s.redis.url = Some(redis.url())).await;
    let setup = client_at(&app.url()).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(setup.create(create_request(1, 1, &json!({}))).await.unwrap().id);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for k in 0..8 {
        let c = client_at(&app.url()).await;
        let (ids, stop) = (ids.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen: HashMap<i64, i64> = HashMap::new();
            let (mut requests, mut failed, mut went_back) = (0u64, 0u64, 0u64);
            let mut i = k;
            while !stop.load(Ordering::SeqCst) {
                let id = ids[i % ids.len()];
                i += 1;
                requests += 1;
                let result = if i % 3 == 0 {
                    c.mutate(id, &[ops::increment_quest_steps("q", 1)], None).await
                } else {
                    c.get(id).await
                };
                match result {
                    Ok(s) => {
                        let high = seen.entry(id).or_insert(0);
                        if s.version < *high {
                            went_back += 1;
                        }
                        *high = (*high).max(s.version);
                    }
                    Err(_) => failed += 1,
                }
            }
            (requests, failed, went_back)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.restart().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut requests, mut failed, mut went_back) = (0, 0, 0);
    for t in tasks {
        let (r, f, b) = t.await.unwrap();
        requests += r;
        failed += f;
        went_back += b;
    }
    record(
        "redis_outage",
        json!({ "requests_sent": requests, "failed_rpcs": failed, "reads_older_than_seen": went_back, "faults_injected": 1 }),
    );
    assert_eq!(failed, 0, "zero failed RPCs");
    assert_eq!(
        went_back, 0,
        "no client read a version older than one it already saw"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: reliability suite"]
async fn a_stopped_postgresql_means_fast_unavailable_and_not_serving_then_recovery() {
    let Some(cluster) = PrivateCluster::start().await else {
        return;
    };
    let db = TestDb::on_url(&cluster.url());
    let app = TestApp::spawn_on(db, |s| s.database.acquire_timeout_ms = 1000).await;
    let c = client_at(&app.url()).await;
    let s = c.create(create_request(1, 1, &json!({}))).await.unwrap();
    cluster.stop();
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    let check = || tonic_health::pb::HealthCheckRequest {
        service: "pixsim.session.v1.SessionService".into(),
    };
    let (mut slowest, mut unavailable) = (Duration::ZERO, 0);
    for _ in 0..5 {
        let started = Instant::now();
        let err = c
            .stub()
            .get_session(c.request(pb::GetSessionRequest::strong(s.id + 1)))
            .await
            .unwrap_err();
        slowest = slowest.max(started.elapsed());
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        unavailable += 1;
    }
    assert!(slowest < Duration::from_secs(3), "fails fast: {slowest:?}");
    let mut not_serving = false;
    for _ in 0..50 {
        if health.check(check()).await.unwrap().into_inner().status == 2 {
            not_serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(not_serving, "health goes NOT_SERVING");
    cluster.restart().await;
    let started = Instant::now();
    let mut recovered = None;
    while started.elapsed() < Duration::from_secs(15) {
        if c.get(s.id).await.is_ok() && health.check(check()).await.unwrap().into_inner().status == 1 {
            recovered = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = recovered.expect("recovers when PostgreSQL returns");
    record(
        "postgres_outage",
        json!({
            "unavailable_answers": unavailable, "slowest_failure_ms": slowest.as_millis(),
            "health_not_serving": not_serving, "recovery_ms": recovered.as_millis(),
        }),
    );
    let mut app = app;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: reliability suite"]
async fn three_replicas_lose_no_update_and_all_watchers_converge() {
    if !Backend::postgres_available() {
        return;
    }
    let Some(redis_url) = shared_redis() else { return };
    let db = TestDb::create(Backend::Postgres).await;
    let mut settings = test_settings(&db);
    settings.redis.url = Some(redis_url);
    settings.redis.key_prefix = unique_prefix();
    let replicas = vec![
        TestApp::start(TestDb::same_as(&db), settings.clone()).await,
        TestApp::start(TestDb::same_as(&db), settings.clone()).await,
        TestApp::start(db, settings).await,
    ];
    let first = client_at(&replicas[0].url()).await;
    let s = first
        .create(create_request(1, 1, &json!({"counter": 0})))
        .await
        .unwrap();
    let mut watchers = Vec::new();
    for r in &replicas {
        let c = client_at(&r.url()).await;
        let mut stream = c.watch(s.id, 0).await.unwrap();
        watchers.push(tokio::spawn(async move {
            let mut last = 0;
            while let Ok(Some(Ok(g))) =
                tokio::time::timeout(Duration::from_secs(3), futures::StreamExt::next(&mut stream)).await
            {
                assert!(g.version > last, "versions strictly increase");
                last = g.version;
            }
            last
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for k in 0..9 {
        let c = client_at(&replicas[k % 3].url()).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                increment_exactly_once(&c, s.id, deadline).await;
            }
            20i64
        }));
    }
    let mut acknowledged = 0;
    for t in tasks {
        acknowledged += t.await.unwrap();
    }
    let end = first.get(s.id).await.unwrap();
    assert_eq!(counter(&end), acknowledged, "no lost update across replicas");
    let mut converged = Vec::new();
    for w in watchers {
        converged.push(w.await.unwrap());
    }
    assert!(
        converged.iter().all(|v| *v == end.version),
        "watchers {converged:?} end at {}",
        end.version
    );
    record(
        "three_replicas",
        json!({ "acknowledged": acknowledged, "final_counter": counter(&end), "final_version": end.version,
                "watchers_final_versions": converged }),
    );
    let mut replicas = replicas;
    for mut r in replicas.drain(..2) {
        r.stop().await;
    }
    replicas.pop().unwrap().finish().await;
}
