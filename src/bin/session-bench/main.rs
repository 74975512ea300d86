//! `session-bench`: a load generator that drives a running session-service over gRPC
//! and reports throughput, latency percentiles (hdrhistogram), conflicts, retries and
//! errors by code — as a human summary, or one JSON object with `--json`.
//!
//!     cargo run --release --bin session-bench -- --scenario update --concurrency 32 --duration 10s

mod cpu;
mod report;
mod scenarios;

use std::time::Duration;

use clap::{Parser, ValueEnum};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// GetSession on warm sessions.
    Get,
    /// GetSession with `min_version` (the version the client knows): local copies may answer.
    GetLocal,
    /// UpdateSession with expected_version, one session per client (no contention).
    Update,
    /// MutateSession without expected_version (a quest step), one session per client.
    Mutate,
    /// N clients on ONE session through the client's update_with_retry.
    Hot,
    /// N clients incrementing one quest counter through MutateSession.
    MutateHot,
    /// N watchers on one session while a writer updates it (delivery latency).
    Watch,
    /// grpc.health.v1.Health/Check: this server's gRPC floor.
    Health,
}

#[derive(Debug, Clone, Parser)]
#[command(version, about = "Load generator for session-service")]
pub struct Args {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub url: String,
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Concurrent clients (watchers, for `watch`).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// How long to measure (after the warm-up), e.g. 10s, 500ms, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many operations instead (per run, not counting warm-up).
    #[arg(long)]
    pub requests: Option<u64>,
    /// Load before measuring, not counted.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Sessions created for `get` (at least `concurrency` are created for `update`).
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,
    /// Approximate size of each session's flags, like a real session.
    #[arg(long, default_value_t = 1024)]
    pub payload_bytes: usize,
    /// HTTP/2 connections the clients share.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Pause between the writer's updates in `watch`.
    #[arg(long, default_value = "10ms", value_parser = parse_duration)]
    pub write_interval: Duration,
    /// `x-user-id` to act as (auth mode none).
    #[arg(long, default_value_t = 1)]
    pub user_id: i64,
    /// A JWT to send instead (`authorization: Bearer …`).
    #[arg(long)]
    pub token: Option<String>,
    /// The server's pid: with it, the report gives CPU µs per operation of the server,
    /// every `postgres` and every `redis-server` process on this machine (from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match scenarios::run(&args).await {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&report.to_json(&args)).expect("serializable")
                );
            } else {
                report.print(&args);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("session-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
