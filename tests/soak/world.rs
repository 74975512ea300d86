//! The soak's own world: a private PostgreSQL cluster, a private Redis (standalone
//! or a Sentinel group), three replicas of the real binary as child processes, and a
//! response-dropping proxy in front of each.

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command},
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::common::{
    dropper::{Drop, Dropper},
    pgcluster::PrivateCluster,
    redis::{PrivateRedis, free_port},
    topologies::{PrivateSentinel, cli},
};

pub enum Redis {
    Standalone(PrivateRedis),
    Sentinel(PrivateSentinel),
}

impl Redis {
    pub fn url(&self) -> String {
        match self {
            Self::Standalone(r) => r.url(),
            Self::Sentinel(s) => s.url(),
        }
    }

    /// The port of the server that takes writes now.
    pub fn master_port(&self) -> u16 {
        match self {
            Self::Standalone(r) => r.port,
            Self::Sentinel(s) => s.master(),
        }
    }
}

/// The pid of the redis-server on `port`, from its own INFO.
pub fn redis_pid(port: u16) -> Option<u32> {
    cli(port, &["INFO", "server"])
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
}

/// One replica: a child process on a fixed port (kept across restarts).
pub struct Replica {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

pub struct World {
    pub pg: PrivateCluster,
    pub redis: Mutex<Redis>,
    pub replicas: Vec<Mutex<Replica>>,
    /// The proxies' addresses: clients call these.
    pub proxies: Vec<SocketAddr>,
    pub droppers: Vec<Dropper>,
    /// The share of responses the proxies drop now, in percent.
    pub drop_percent: Arc<AtomicU64>,
    server_bin: PathBuf,
    redis_url: String,
    prefix: String,
}

impl World {
    /// Starts everything; `None` (said why) where PostgreSQL's cluster tools or
    /// redis-server are missing outside CI.
    pub async fn start(sentinel: bool, replicas: usize, seed: u64) -> Option<Self> {
        let pg = PrivateCluster::start().await?;
        let redis = if sentinel {
            Redis::Sentinel(PrivateSentinel::start().await?)
        } else {
            Redis::Standalone(PrivateRedis::start().await?)
        };
        let server_bin = std::env::var_os("SOAK_SERVER_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_session-service")));
        let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("soak");
        std::fs::create_dir_all(&logs).unwrap();
        let mut world = Self {
            redis_url: redis.url(),
            pg,
            redis: Mutex::new(redis),
            replicas: Vec::new(),
            proxies: Vec::new(),
            droppers: Vec::new(),
            drop_percent: Arc::default(),
            server_bin,
            prefix: format!("soak:{}:", std::process::id()),
        };
        for n in 0..replicas {
            let mut replica = Replica {
                port: free_port(),
                child: None,
                log: logs.join(format!("replica-{n}.log")),
            };
            world.spawn(&mut replica).await;
            let channel = Channel::from_shared(format!("http://127.0.0.1:{}", replica.port))
                .unwrap()
                .connect_lazy();
            let mode = Drop::Switchable {
                percent: world.drop_percent.clone(),
                seed: seed.wrapping_add(n as u64),
            };
            let (addr, dropper) = Dropper::start_with(channel, mode).await;
            world.proxies.push(addr);
            world.droppers.push(dropper);
            world.replicas.push(Mutex::new(replica));
        }
        Some(world)
    }

    /// A replica's own address (no proxy): for setup and the final reads.
    pub async fn direct(&self, n: usize) -> String {
        format!("http://127.0.0.1:{}", self.replicas[n].lock().await.port)
    }

    /// Starts the replica's process and waits until it listens; a start that fails
    /// (PostgreSQL restarting under it, say) is tried again.
    pub async fn spawn(&self, replica: &mut Replica) {
        for _ in 0..120 {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&replica.log)
                .unwrap();
            let mut child = Command::new(&self.server_bin)
                .args(["serve", "--listen", &format!("127.0.0.1:{}", replica.port)])
                .env("DATABASE_URL", self.pg.url())
                .env("REDIS_URL", &self.redis_url)
                .env("SESSION__REDIS__KEY_PREFIX", &self.prefix)
                // The checker reads every version's event.
                .env("SESSION__DATABASE__MAX_EVENTS_PER_SESSION", "100000000")
                // A short TTL: a Redis restarted by the nemesis is trusted again (two
                // TTLs later) often enough for the cache to be exercised between faults.
                .env("SESSION__REDIS__TTL_SECS", "5")
                // The cache's own account of outages and repairs, for a failing run.
                .env("RUST_LOG", "warn,session_service::cache=info")
                .env("SESSION__LOG__FORMAT", "json")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("the server binary starts");
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(("127.0.0.1", replica.port))
                    .await
                    .is_ok()
                {
                    replica.child = Some(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!(
            "replica on {} did not start (log: {})",
            replica.port,
            replica.log.display()
        );
    }
}

impl Replica {
    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl std::ops::Drop for World {
    fn drop(&mut self) {
        for r in &self.replicas {
            if let Ok(mut r) = r.try_lock() {
                r.kill();
            }
        }
    }
}
