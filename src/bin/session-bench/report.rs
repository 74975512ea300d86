//! Measurements: per-worker histograms merged into one report.

use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::Args;

/// What one worker (or all, merged) measured.
pub struct Tally {
    /// Latency in microseconds.
    pub latency: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    pub conflicts: u64,
    pub retries: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            errors: BTreeMap::new(),
            conflicts: 0,
            retries: 0,
        }
    }
}

impl Tally {
    pub fn ok(&mut self, took: Duration) {
        let us = (took.as_micros() as u64).clamp(1, 60_000_000);
        self.latency.record(us).expect("clamped into bounds");
    }

    pub fn error(&mut self, code: impl Into<String>) {
        *self.errors.entry(code.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        self.latency.add(other.latency).expect("same bounds");
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.conflicts += other.conflicts;
        self.retries += other.retries;
    }
}

/// The result of a measured run.
pub struct Report {
    pub tally: Tally,
    pub elapsed: Duration,
    /// CPU microseconds per operation by role (server, postgres, redis, bench).
    pub cpu_us_per_op: BTreeMap<&'static str, f64>,
}

impl Report {
    fn ops(&self) -> u64 {
        self.tally.latency.len()
    }

    fn per_sec(&self) -> f64 {
        self.ops() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn ms(&self, q: f64) -> f64 {
        self.tally.latency.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn to_json(&self, args: &Args) -> serde_json::Value {
        let h = &self.tally.latency;
        json!({
            "scenario": args.scenario,
            "concurrency": args.concurrency,
            "duration_s": self.elapsed.as_secs_f64(),
            "ops": self.ops(),
            "ops_per_sec": self.per_sec(),
            "latency_ms": {
                "p50": self.ms(0.50),
                "p90": self.ms(0.90),
                "p99": self.ms(0.99),
                "max": h.max() as f64 / 1000.0,
                "mean": h.mean() / 1000.0,
            },
            "conflicts": self.tally.conflicts,
            "retries": self.tally.retries,
            "errors": self.tally.errors,
            "payload_bytes": args.payload_bytes,
            "cpu_us_per_op": self.cpu_us_per_op,
        })
    }

    pub fn print(&self, args: &Args) {
        println!(
            "scenario      {:?} (concurrency {})",
            args.scenario, args.concurrency
        );
        println!(
            "measured      {} ops in {:.2} s = {:.0} ops/s",
            self.ops(),
            self.elapsed.as_secs_f64(),
            self.per_sec()
        );
        println!(
            "latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            self.ms(0.5),
            self.ms(0.9),
            self.ms(0.99),
            self.tally.latency.max() as f64 / 1000.0
        );
        println!(
            "conflicts     {}   retries {}",
            self.tally.conflicts, self.tally.retries
        );
        if !self.cpu_us_per_op.is_empty() {
            println!("cpu µs/op     {:?}", self.cpu_us_per_op);
        }
        if self.tally.errors.is_empty() {
            println!("errors        none");
        } else {
            println!("errors        {:?}", self.tally.errors);
        }
    }
}
