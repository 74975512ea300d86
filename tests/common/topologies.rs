//! Redis deployments of a test's own, from `redis-server`: a Cluster of masters, and
//! a Sentinel group (master, replica, sentinel) that can be failed over.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{eventually, redis::free_port};

/// A process this test started; killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// True if `redis-server` and `redis-cli` run here (CI must have them).
fn binaries_present() -> bool {
    let present = ["redis-server", "redis-cli"].iter().all(|bin| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok()
    });
    assert!(
        present || std::env::var_os("CI").is_none(),
        "CI needs redis-server and redis-cli"
    );
    if !present {
        super::skip::skipped("private Redis", "redis-server on PATH");
    }
    present
}

/// `redis-cli -p <port> <args…>`'s output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn(dir: &std::path::Path, args: &[&str]) -> Process {
    let child = Command::new("redis-server")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    Process(child)
}

async fn answers(port: u16) {
    eventually(
        &format!("redis-server on {port} answers"),
        Duration::from_secs(10),
        || async move { cli(port, &["PING"]).contains("PONG").then_some(()) },
    )
    .await;
}

/// Options every private server shares: loopback, no persistence.
pub fn base_args(port: &str) -> Vec<&str> {
    vec![
        "--port",
        port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
}

/// A Redis Cluster of `masters` masters (no replicas), all slots assigned.
pub struct PrivateCluster {
    pub ports: Vec<u16>,
    processes: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl PrivateCluster {
    pub async fn start(masters: usize) -> Option<Self> {
        if !binaries_present() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..masters).map(|_| free_port()).collect();
        let mut processes = Vec::new();
        for port in &ports {
            let port = port.to_string();
            let conf = format!("nodes-{port}.conf");
            let mut args = base_args(&port);
            args.extend(["--cluster-enabled", "yes", "--cluster-config-file", &conf]);
            args.extend(["--cluster-node-timeout", "2000"]);
            processes.push(spawn(dir.path(), &args));
        }
        for port in &ports {
            answers(*port).await;
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create runs");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        for port in &ports {
            let port = *port;
            eventually(
                "the cluster is ok on every node",
                Duration::from_secs(20),
                || async move {
                    cli(port, &["CLUSTER", "INFO"])
                        .contains("cluster_state:ok")
                        .then_some(())
                },
            )
            .await;
        }
        Some(Self {
            ports,
            processes,
            _dir: dir,
        })
    }

    /// Moves `slots` hash slots, with their keys, from the `from`-th master to the
    /// `to`-th (`redis-cli --cluster reshard`: MIGRATE, so clients see MOVED and ASK).
    pub fn reshard(&self, from: usize, to: usize, slots: u32) {
        let id = |i: usize| cli(self.ports[i], &["CLUSTER", "MYID"]).trim().to_owned();
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{}", self.ports[0])])
            .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster reshard runs");
        assert!(
            out.status.success(),
            "reshard: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// Kills every node (SIGKILL): the whole cluster is gone.
    pub fn kill_all(&mut self) {
        self.processes.clear();
    }

    /// `redis-cluster://` naming every node, as an operator would.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis-cluster://{}", nodes.join(","))
    }

    /// Subscribers of a sharded channel, summed over the nodes (each counts its own).
    pub fn shard_subscribers(&self, channel: &str) -> i64 {
        self.ports
            .iter()
            .map(|p| {
                let out = cli(*p, &["PUBSUB", "SHARDNUMSUB", channel]);
                out.lines()
                    .nth(1)
                    .and_then(|n| n.trim().parse::<i64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// The master name the Sentinel group monitors.
pub const MASTER: &str = "sessions";

/// A master, one replica and one sentinel watching them.
pub struct PrivateSentinel {
    pub ports: [u16; 2],
    pub sentinel: u16,
    _processes: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl PrivateSentinel {
    pub async fn start() -> Option<Self> {
        if !binaries_present() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let (master, replica, sentinel) = (free_port(), free_port(), free_port());
        // As a Sentinel group should run: a master cut off from its replica (the old
        // one, after a failover promoted the replica) refuses writes within two
        // seconds (NOREPLICAS) instead of taking writes the new master will never see.
        // Not 1: a replica acknowledges once a second and the master counts whole
        // seconds, so at 1 a healthy group refuses about a quarter of its writes.
        fn fenced(port: &str) -> Vec<&str> {
            let mut args = base_args(port);
            args.extend(["--min-replicas-to-write", "1", "--min-replicas-max-lag", "2"]);
            args
        }
        let master_port = master.to_string();
        let mut processes = vec![spawn(dir.path(), &fenced(&master_port))];
        answers(master).await;
        let replica_port = replica.to_string();
        let mut args = fenced(&replica_port);
        args.extend(["--replicaof", "127.0.0.1", &master_port]);
        processes.push(spawn(dir.path(), &args));
        answers(replica).await;
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel}\nbind 127.0.0.1\n\
                 sentinel monitor {MASTER} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n"
            ),
        )
        .unwrap();
        let conf = conf.to_string_lossy().into_owned();
        processes.push(spawn(dir.path(), &[&conf, "--sentinel"]));
        answers(sentinel).await;
        let group = Self {
            ports: [master, replica],
            sentinel,
            _processes: processes,
            _dir: dir,
        };
        // A failover needs the sentinel to know the replica, and the replica in sync.
        eventually(
            "the sentinel knows the synced replica",
            Duration::from_secs(30),
            || async {
                let replicas = cli(sentinel, &["SENTINEL", "REPLICAS", MASTER]);
                let synced = cli(replica, &["INFO", "replication"]).contains("master_link_status:up");
                (replicas.contains(&replica.to_string()) && synced).then_some(())
            },
        )
        .await;
        Some(group)
    }

    /// `redis-sentinel://` naming the sentinel and the master name.
    pub fn url(&self) -> String {
        format!("redis-sentinel://127.0.0.1:{}/{MASTER}", self.sentinel)
    }

    /// The port the sentinel names as master now.
    pub fn master(&self) -> u16 {
        let out = cli(self.sentinel, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]);
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .expect("a master port")
    }

    /// `SENTINEL FAILOVER`, then waits until the other server is master. The sentinel
    /// refuses or abandons a failover while its replica is still syncing after the
    /// last one (or one is in progress): asked again each second, for up to a minute.
    pub async fn failover(&self) -> u16 {
        let before = self.master();
        let other = self
            .ports
            .into_iter()
            .find(|p| *p != before)
            .expect("two servers");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut asked: Option<tokio::time::Instant> = None;
        let mut answers = Vec::new();
        loop {
            let now = self.master();
            if now != before && cli(now, &["ROLE"]).starts_with("master") {
                return now;
            }
            let synced = cli(other, &["INFO", "replication"]).contains("master_link_status:up");
            if synced && asked.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                answers.push(
                    cli(self.sentinel, &["SENTINEL", "FAILOVER", MASTER])
                        .trim()
                        .to_owned(),
                );
                asked = Some(tokio::time::Instant::now());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no failover from {before} within 60 s; the sentinel answered {answers:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
