//! The randomized fault soak (`#[ignore]`: `scripts/soak.sh`, and `.ci/run` through
//! the test command). A private PostgreSQL, Redis and three replicas behind
//! response-dropping proxies; a seeded nemesis injects overlapping faults while
//! clients mix every write path; afterwards the checker (`history.rs`) proves the
//! whole history against the final state.
//!
//! Settings come from the environment (the script sets them):
//!   SOAK_DURATION_SECS (120), SOAK_SEED (1; `random` picks one and prints it),
//!   SOAK_REDIS (standalone | sentinel), SOAK_REPORT (write the JSON report here),
//!   SOAK_SERVER_BIN (another build of the server, e.g. a deliberately broken one),
//!   SOAK_EXPECT_VIOLATION (1: pass only if the checker finds something).

#[path = "../common/mod.rs"]
mod common;
mod history;
mod nemesis;
mod workload;
mod world;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use serde_json::json;
use session_service::{client::create_request, pb};

use history::{Final, Report};
use nemesis::{Fault, Injected, Rng};
use workload::{History, Shared};
use world::World;

const REPLICAS: usize = 3;
const SESSIONS: usize = 4;
const CLIENTS: usize = 6;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: the randomized fault soak (scripts/soak.sh)"]
async fn randomized_faults_lose_duplicate_and_reorder_nothing() {
    let duration =
        Duration::from_secs(env("SOAK_DURATION_SECS").map_or(120, |d| d.parse().expect("seconds")));
    let seed: u64 = match env("SOAK_SEED").as_deref() {
        None => 1,
        Some("random") => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            u64::from(nanos) ^ u64::from(std::process::id())
        }
        Some(s) => s.parse().expect("SOAK_SEED is a number or `random`"),
    };
    let sentinel = env("SOAK_REDIS").as_deref() == Some("sentinel");
    let redis = if sentinel { "sentinel" } else { "standalone" };
    eprintln!(
        "soak: seed {seed}, {}s, redis {redis} (replay: scripts/soak.sh --seed {seed} --duration {} --redis {redis})",
        duration.as_secs(),
        duration.as_secs()
    );
    let Some(world) = World::start(sentinel, REPLICAS, seed).await else {
        return;
    };
    let world = Arc::new(world);

    let setup = workload::client(&world.direct(0).await);
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        let created = setup
            .create(create_request(1, 1, &json!({"log": []})))
            .await
            .unwrap();
        ids.push(created.id);
    }
    let began = Instant::now();
    let began_unix = chrono::Utc::now();
    eprintln!(
        "soak: began at {} (the replicas' logs are in {}/soak)",
        began_unix.to_rfc3339(),
        env!("CARGO_TARGET_TMPDIR")
    );
    let shared = Arc::new(Shared {
        ids,
        acked_max: (0..SESSIONS).map(|_| AtomicI64::new(1)).collect(),
        stop: AtomicBool::new(false),
        began,
        successes: Default::default(),
    });
    let mut rng = Rng::new(seed);
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        let addr = format!("http://{}", world.proxies[n % REPLICAS]);
        tasks.push(tokio::spawn(workload::run_client(
            n,
            addr,
            shared.clone(),
            Rng::new(rng.next()),
        )));
    }
    for s in 0..SESSIONS {
        let addr = format!("http://{}", world.proxies[s % REPLICAS]);
        tasks.push(tokio::spawn(workload::run_watcher(s, addr, shared.clone())));
    }
    let calm = Arc::new(AtomicBool::new(false));
    let nemesis = tokio::spawn(nemesis::run(
        world.clone(),
        Rng::new(rng.next()),
        sentinel,
        began,
        calm.clone(),
    ));

    tokio::time::sleep(duration).await;
    // Faults stop and heal; the workload goes on a little on the healed world.
    calm.store(true, Ordering::SeqCst);
    let injected = nemesis.await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    shared.stop.store(true, Ordering::SeqCst);
    let mut history = History::default();
    for t in tasks {
        history.merge(t.await.unwrap());
    }

    let (finals, committed_at) = final_states(&world, &shared.ids).await;

    let report = history::check(&finals, &history.writes, &history.reads, &history.watches);
    let began_unix_ms = began_unix.timestamp_millis();
    // For each stale read: when (ms into the run) the version it answered and the one
    // it had to reach were committed, to line them up with the faults.
    let stale: Vec<serde_json::Value> = report
        .stale_reads
        .iter()
        .map(|&(s, answered, needed)| {
            let at = |v: i64| committed_at[s].get(&v).map(|t| t - began_unix_ms);
            json!({"session": s, "answered": answered, "answered_committed_ms": at(answered),
                   "needed": needed, "needed_committed_ms": at(needed),
                   "next_committed_ms": at(answered + 1)})
        })
        .collect();
    eprintln!("soak: stale reads {}", serde_json::to_string(&stale).unwrap());
    let summary = summarize(
        seed, duration, redis, &world, &history, &report, &injected, &shared,
    );
    eprintln!("{}", serde_json::to_string_pretty(&summary).unwrap());
    if let Some(path) = env("SOAK_REPORT") {
        std::fs::write(path, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    }
    let clean = report.ok() && history.replay_mismatches.is_empty();
    if env("SOAK_EXPECT_VIOLATION").is_some() {
        assert!(
            !clean,
            "the checker found nothing wrong with a build meant to be broken (seed {seed})"
        );
        return;
    }
    assert!(
        clean,
        "seed {seed}: {} lost, {} duplicated, {} phantom, {} misordered, {} non-monotonic, replays {:?}; first: {:#?}",
        report.lost,
        report.duplicated,
        report.phantom,
        report.misordered,
        report.non_monotonic,
        history.replay_mismatches.first(),
        report.violations
    );
    assert!(report.acknowledged > 0, "the workload made progress");
}

/// Every session read strongly from a replica directly, with its events.
/// Also when each version was committed (unix ms), per session.
async fn final_states(world: &World, ids: &[i64]) -> (Vec<Final>, Vec<HashMap<i64, i64>>) {
    let c = workload::client(&world.direct(0).await);
    let mut finals = Vec::new();
    let mut committed_at = Vec::new();
    for &id in ids {
        let s = common::eventually("a final read", Duration::from_secs(60), || async {
            c.get(id).await.ok()
        })
        .await;
        let listed: Vec<pb::SessionEvent> =
            common::eventually("the events", Duration::from_secs(60), || async {
                let listed: Result<Vec<_>, _> =
                    c.list_events(id).collect::<Vec<_>>().await.into_iter().collect();
                listed.ok()
            })
            .await;
        let events = listed.iter().map(|e| (e.version, e.action.clone())).collect();
        committed_at.push(
            listed
                .iter()
                .map(|e| {
                    (
                        e.version,
                        e.created_at
                            .as_ref()
                            .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000),
                    )
                })
                .collect(),
        );
        let (log, items) = workload::lists(&s);
        finals.push(Final {
            version: s.version,
            log,
            items,
            events,
        });
    }
    (finals, committed_at)
}

/// The report RELIABILITY.md's soak table is written from.
#[allow(clippy::too_many_arguments)]
fn summarize(
    seed: u64,
    duration: Duration,
    redis: &str,
    world: &World,
    history: &History,
    report: &Report,
    injected: &[Injected],
    shared: &Shared,
) -> serde_json::Value {
    let mut faults: BTreeMap<Fault, u64> = BTreeMap::new();
    for i in injected {
        *faults.entry(i.fault).or_default() += 1;
    }
    let mut successes = shared.successes.lock().unwrap().clone();
    successes.sort_unstable();
    // The longest stretch without any successful operation that overlaps a fault of each kind.
    let mut unavailable: BTreeMap<Fault, u64> = BTreeMap::new();
    for i in injected {
        let gap = successes
            .windows(2)
            .filter(|w| w[1] > i.start_ms && w[0] < i.end_ms)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(0);
        let longest = unavailable.entry(i.fault).or_default();
        *longest = (*longest).max(gap);
    }
    // The faults under way around each stale read (within 5 s before it was sent).
    let near: Vec<serde_json::Value> = report
        .read_violation_ms
        .iter()
        .map(|&at| {
            let faults: Vec<&Injected> = injected
                .iter()
                .filter(|i| i.start_ms <= at && i.end_ms + 5000 >= at)
                .collect();
            json!({"read_sent_ms": at, "faults": faults})
        })
        .collect();
    let dropped: u64 = world
        .droppers
        .iter()
        .map(|d| d.dropped.load(Ordering::SeqCst))
        .sum();
    json!({
        "seed": seed,
        "duration_s": duration.as_secs(),
        "redis": redis,
        "replicas": REPLICAS,
        "sessions": SESSIONS,
        "clients": CLIENTS,
        "faults": faults,
        "responses_dropped": dropped,
        "operations": history.ops,
        "errors": history.errors,
        "odd_errors": history.odd_errors,
        "replays_checked": history.replays,
        "replay_mismatches": history.replay_mismatches.len(),
        "check": report,
        "longest_unavailable_ms": unavailable,
        "faults_near_stale_reads": near,
        "injected": injected,
    })
}
