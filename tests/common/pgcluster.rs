//! A PostgreSQL cluster of the test's own (Debian's pg_createcluster), on a free
//! port, that the test may stop and start.

use std::process::Command;

pub struct PrivateCluster {
    version: String,
    name: String,
    pub port: u16,
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

impl PrivateCluster {
    /// Creates and starts one; `None` (with a message) where pg_createcluster is missing.
    pub async fn start() -> Option<Self> {
        let Some(version) = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
        else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs Debian's PostgreSQL cluster tools"
            );
            eprintln!("no /etc/postgresql: skipping a private-cluster test");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let name = format!("sstest{}", std::process::id());
        let p = port.to_string();
        let created = run(
            "pg_createcluster",
            &[&version, &name, "-p", &p, "--start", "--", "--auth=trust"],
        );
        assert!(created, "pg_createcluster {version} {name} failed");
        let cluster = Self { version, name, port };
        cluster.wait_ready().await;
        Some(cluster)
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if run(
                "pg_isready",
                &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"],
            ) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("private cluster did not come up");
    }

    pub fn stop(&self) {
        assert!(run(
            "pg_ctlcluster",
            &[
                "--skip-systemctl-redirect",
                &self.version,
                &self.name,
                "stop",
                "-m",
                "fast"
            ]
        ));
    }

    pub async fn restart(&self) {
        assert!(run(
            "pg_ctlcluster",
            &["--skip-systemctl-redirect", &self.version, &self.name, "start"]
        ));
        self.wait_ready().await;
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new("pg_dropcluster")
            .args(["--stop", &self.version, &self.name])
            .output();
    }
}
