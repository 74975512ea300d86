//! The nemesis: at seeded random intervals it starts faults of random kinds, each
//! in its own task, so they overlap (a replica dies while Redis is paused and
//! responses are being dropped). Faults of one resource do not overlap each other
//! (one Redis cannot be killed while it is paused).

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::world::{Redis, World, redis_pid};

/// A small seeded generator (splitmix64): the same seed, the same schedule.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    pub fn percent(&mut self) -> u64 {
        self.next() % 100
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// kill -9 a replica, start it again after a while.
    ReplicaKill,
    /// SIGSTOP the Redis master, SIGCONT after a while.
    RedisPause,
    /// Standalone: kill -9 Redis and start it again empty.
    RedisKill,
    /// Sentinel: `SENTINEL FAILOVER`, the replica becomes master.
    RedisFailover,
    /// Stop PostgreSQL (fast), start it again after a while.
    PgRestart,
    /// The proxies drop 10–30 % of responses for a while.
    DropResponses,
}

/// One fault as it happened: when it started and when it was healed (since the run began).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Injected {
    pub fault: Fault,
    pub start_ms: u64,
    pub end_ms: u64,
    pub detail: String,
}

pub fn kinds(sentinel: bool) -> Vec<Fault> {
    let redis = if sentinel {
        Fault::RedisFailover
    } else {
        Fault::RedisKill
    };
    vec![
        Fault::ReplicaKill,
        Fault::RedisPause,
        redis,
        Fault::PgRestart,
        Fault::DropResponses,
    ]
}

/// Runs faults until `stop`; returns every fault injected, all healed.
pub async fn run(
    world: Arc<World>,
    mut rng: Rng,
    sentinel: bool,
    began: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Injected> {
    let kinds = kinds(sentinel);
    let mut tasks = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(rng.millis(300, 2500)).await;
        let fault = kinds[rng.range(0, kinds.len() as u64) as usize];
        let (world, rng) = (world.clone(), Rng::new(rng.next()));
        tasks.push(tokio::spawn(inject(world, rng, fault, began)));
    }
    let mut injected = Vec::new();
    for t in tasks {
        if let Some(i) = t.await.expect("a fault task") {
            injected.push(i);
        }
    }
    injected.sort_by_key(|i| i.start_ms);
    injected
}

/// One fault, start to heal. `None` when its resource was busy with another fault.
async fn inject(world: Arc<World>, mut rng: Rng, fault: Fault, began: Instant) -> Option<Injected> {
    let ms = |t: Instant| t.duration_since(began).as_millis() as u64;
    let start;
    let detail;
    match fault {
        Fault::ReplicaKill => {
            let n = rng.range(0, world.replicas.len() as u64) as usize;
            let mut replica = world.replicas[n].try_lock().ok()?;
            start = Instant::now();
            replica.kill();
            let down = rng.millis(200, 3000);
            tokio::time::sleep(down).await;
            world.spawn(&mut replica).await;
            detail = format!("replica {n} down {} ms", down.as_millis());
        }
        Fault::RedisPause => {
            let redis = world.redis.try_lock().ok()?;
            let port = redis.master_port();
            let pid = redis_pid(port)?;
            start = Instant::now();
            signal("STOP", pid);
            let paused = rng.millis(300, 4000);
            tokio::time::sleep(paused).await;
            signal("CONT", pid);
            detail = format!("redis {port} paused {} ms", paused.as_millis());
        }
        Fault::RedisKill => {
            let mut redis = world.redis.try_lock().ok()?;
            let Redis::Standalone(r) = &mut *redis else {
                return None;
            };
            start = Instant::now();
            r.kill();
            let down = rng.millis(200, 3000);
            tokio::time::sleep(down).await;
            r.restart().await;
            detail = format!("redis killed, down {} ms", down.as_millis());
        }
        Fault::RedisFailover => {
            let redis = world.redis.try_lock().ok()?;
            let Redis::Sentinel(s) = &*redis else {
                return None;
            };
            start = Instant::now();
            let master = s.failover().await;
            detail = format!("redis master now {master}");
        }
        Fault::PgRestart => {
            // One restart at a time (as one Redis fault at a time).
            static PG: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
            let _held = PG.try_lock().ok()?;
            start = Instant::now();
            world.pg.stop();
            let down = rng.millis(200, 3000);
            tokio::time::sleep(down).await;
            world.pg.restart().await;
            detail = format!("postgresql down {} ms", down.as_millis());
        }
        Fault::DropResponses => {
            static DROPS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
            let _held = DROPS.try_lock().ok()?;
            let percent = rng.range(10, 31);
            start = Instant::now();
            world.drop_percent.store(percent, Ordering::SeqCst);
            let lasting = rng.millis(1000, 6000);
            tokio::time::sleep(lasting).await;
            world.drop_percent.store(0, Ordering::SeqCst);
            detail = format!("{percent} % of responses dropped for {} ms", lasting.as_millis());
        }
    }
    Some(Injected {
        fault,
        start_ms: ms(start),
        end_ms: ms(Instant::now()),
        detail,
    })
}

fn signal(name: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{name} {pid}");
}
