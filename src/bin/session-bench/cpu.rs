//! CPU time of the processes that serve a run, read from `/proc/<pid>/stat` at the
//! start and end of the measured window (not the warm-up), so a report can say how
//! many microseconds of server, PostgreSQL and Redis CPU one operation costs.

use std::{collections::BTreeMap, fs};

/// Which processes count for what: the server by pid; PostgreSQL and Redis by
/// process name (every `postgres` backend, every `redis-server`).
#[derive(Debug, Clone)]
pub struct Targets {
    pub server_pid: Option<u32>,
}

/// Clock ticks (utime + stime) of each counted process, by pid, with its role.
#[derive(Debug, Clone, Default)]
pub struct Sample(BTreeMap<u32, (&'static str, u64)>);

/// `utime + stime + cutime + cstime` of one process, in clock ticks; `None` if it
/// is gone. The children's share matters for PostgreSQL: the postmaster collects
/// the CPU time of backends that ended (a pool's reconnects).
fn ticks(pid: &str) -> Option<(String, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name sits in parentheses and may contain spaces: split after the last ')'.
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 to 17 of the whole line are the 12th to 15th after the name.
    let total = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some((name, total))
}

impl Targets {
    pub fn sample(&self) -> Sample {
        let mut out = BTreeMap::new();
        let own = std::process::id().to_string();
        let server = self.server_pid.map(|p| p.to_string());
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Some((name, t)) = ticks(&pid) else { continue };
            let role = if Some(&pid) == server.as_ref() {
                "server"
            } else if pid == own {
                "bench"
            } else if name == "postgres" {
                "postgres"
            } else if name == "redis-server" {
                "redis"
            } else {
                continue;
            };
            if let Ok(pid) = pid.parse() {
                out.insert(pid, (role, t));
            }
        }
        Sample(out)
    }
}

/// Microseconds of CPU per operation for each role between two samples.
pub fn per_op(before: &Sample, after: &Sample, ops: u64) -> BTreeMap<&'static str, f64> {
    // Linux reports CPU time to user space in USER_HZ = 100 ticks per second.
    const TICKS_PER_SEC: f64 = 100.0;
    let mut spent: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (pid, (role, t)) in &after.0 {
        // A process that started during the run counts from zero; one that ended
        // during it counts in its parent's children's time (see `ticks`).
        let was = before.0.get(pid).map_or(0, |(_, t)| *t);
        *spent.entry(role).or_default() += t.saturating_sub(was);
    }
    spent
        .into_iter()
        .map(|(role, t)| {
            let us = t as f64 / TICKS_PER_SEC * 1e6 / ops.max(1) as f64;
            (role, (us * 10.0).round() / 10.0)
        })
        .collect()
}
