//! Redis for tests: the machine's server with a unique key prefix per test, or a
//! private `redis-server` on a free port that a test may kill and restart.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

/// `TEST_REDIS_URL`, if set. With `CI` set, a missing URL is a failure.
pub fn shared_redis() -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!("CI is set but TEST_REDIS_URL is not"),
        _ => {
            super::skip::skipped("Redis", "TEST_REDIS_URL");
            None
        }
    }
}

/// How many clients of the Redis at `url` are subscribed to `channel` (PUBSUB
/// NUMSUB): how a test knows a replica's notices can reach it.
pub async fn subscribers(url: &str, channel: &str) -> i64 {
    use fred::prelude::*;
    let client = Builder::from_config(Config::from_url(url).expect("a Redis URL"))
        .build()
        .expect("a Redis client");
    client.init().await.expect("Redis answers");
    let reply: Vec<Value> = client.pubsub_numsub(channel).await.expect("PUBSUB NUMSUB");
    let _ = client.quit().await;
    reply.get(1).and_then(Value::as_i64).unwrap_or(0)
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("test:{}:{:x}:", std::process::id(), nanos)
}

/// A `redis-server` of this test's own.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PrivateRedis {
    /// Starts one, or returns `None` (with a message) if there is no redis-server binary.
    pub async fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            assert!(std::env::var_os("CI").is_none(), "CI needs a redis-server binary");
            eprintln!("no redis-server binary: skipping an outage test");
            return None;
        }
        let mut r = Self {
            port: free_port(),
            child: None,
        };
        r.restart().await;
        Some(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id, for SIGSTOP / SIGCONT.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills it (SIGKILL): connections drop, nothing is kept.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(super::topologies::base_args(&port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("private redis-server did not come up on {}", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
