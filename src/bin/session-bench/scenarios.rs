//! The scenarios: setup, warm-up, then `concurrency` workers until the deadline or
//! the request budget.

use std::{
    collections::HashMap,
    error::Error,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use session_service::{
    client::{ClientError, Credentials, SessionClient, create_request, ops},
    domain::Session,
    pb,
    wire::{json_to_struct, json_to_value, status::conflict_session},
};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{
    Args, Scenario, cpu,
    report::{Report, Tally},
};

type BoxError = Box<dyn Error + Send + Sync>;

/// When a run stops: at a deadline, or when the shared budget runs out.
#[derive(Clone)]
struct Stop {
    deadline: Instant,
    budget: Option<Arc<AtomicI64>>,
}

impl Stop {
    fn next(&self) -> bool {
        if Instant::now() >= self.deadline {
            return false;
        }
        self.budget
            .as_ref()
            .is_none_or(|b| b.fetch_sub(1, Ordering::Relaxed) > 0)
    }
}

fn flags(args: &Args, counter: i64) -> serde_json::Value {
    json!({ "blob": "x".repeat(args.payload_bytes.saturating_sub(32)), "counter": counter })
}

async fn connect(args: &Args) -> Result<Vec<SessionClient>, BoxError> {
    let credentials = match &args.token {
        Some(t) => Credentials::Bearer(t.clone()),
        None => Credentials::UserId(args.user_id),
    };
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = Channel::from_shared(args.url.clone())?.connect().await?;
        clients.push(SessionClient::new(channel).with_credentials(credentials.clone()));
    }
    Ok(clients)
}

/// Creates the sessions the scenario works on.
async fn setup(args: &Args, client: &SessionClient) -> Result<Vec<Session>, BoxError> {
    let n = match args.scenario {
        Scenario::Health => 0,
        Scenario::Get | Scenario::GetLocal => args.sessions.max(1),
        Scenario::Update => args.sessions.max(args.concurrency),
        Scenario::Hot | Scenario::MutateHot | Scenario::Watch => 1,
    };
    let mut sessions = Vec::with_capacity(n);
    for _ in 0..n {
        sessions.push(client.create(create_request(1, 1, &flags(args, 0))).await?);
    }
    Ok(sessions)
}

pub async fn run(args: &Args) -> Result<Report, BoxError> {
    let clients = connect(args).await?;
    let sessions = Arc::new(Mutex::new(setup(args, &clients[0]).await?));
    if !args.warmup.is_zero() {
        let stop = Stop {
            deadline: Instant::now() + args.warmup,
            budget: None,
        };
        drive(args, &clients, &sessions, stop, false).await?;
    }
    let budget = args.requests.map(|n| Arc::new(AtomicI64::new(n as i64)));
    let deadline = Instant::now()
        + if budget.is_some() {
            Duration::from_secs(3600)
        } else {
            args.duration
        };
    let targets = cpu::Targets {
        server_pid: args.server_pid,
    };
    let cpu_before = targets.sample();
    let started = Instant::now();
    let tally = drive(args, &clients, &sessions, Stop { deadline, budget }, !args.json).await?;
    let elapsed = started.elapsed();
    let cpu_us_per_op = cpu::per_op(&cpu_before, &targets.sample(), tally.latency.len());
    Ok(Report {
        tally,
        elapsed,
        cpu_us_per_op,
    })
}

async fn drive(
    args: &Args,
    clients: &[SessionClient],
    sessions: &Arc<Mutex<Vec<Session>>>,
    stop: Stop,
    progress: bool,
) -> Result<Tally, BoxError> {
    let bar = (progress && args.requests.is_none() && args.duration >= Duration::from_secs(3)).then(|| {
        let bar = ProgressBar::new(args.duration.as_secs());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:40}] {pos}/{len} s")
                .expect("template"),
        );
        bar
    });
    let ticker = bar.clone().map(|bar| {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
        })
    });
    let tally = if args.scenario == Scenario::Watch {
        watch(args, clients, sessions, stop).await?
    } else {
        let mut workers = Vec::new();
        for w in 0..args.concurrency {
            let client = clients[w % clients.len()].clone();
            let args = args.clone();
            let sessions = sessions.clone();
            let stop = stop.clone();
            workers.push(tokio::spawn(async move {
                worker(w, args, client, sessions, stop).await
            }));
        }
        let mut total = Tally::default();
        for (w, worker) in workers.into_iter().enumerate() {
            let (tally, last) = worker.await?;
            total.merge(tally);
            // The next run (after the warm-up) starts from where this one left off.
            let mut sessions = sessions.lock().expect("sessions");
            let n = sessions.len();
            if let Some(s) = last.filter(|_| n > 0)
                && sessions[w % n].version < s.version
            {
                sessions[w % n] = s;
            }
        }
        total
    };
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(tally)
}

fn code_of(e: &ClientError) -> String {
    e.code()
        .map_or_else(|| "transport".to_string(), |c| format!("{c:?}"))
}

/// Runs one client; returns what it measured and the last session it knew.
async fn worker(
    w: usize,
    args: Args,
    client: SessionClient,
    sessions: Arc<Mutex<Vec<Session>>>,
    stop: Stop,
) -> (Tally, Option<Session>) {
    let mut t = Tally::default();
    let mut health = HealthClient::new(client.channel());
    let mut stub = client.stub();
    let n = sessions.lock().expect("sessions").len().max(1);
    let mut mine = sessions.lock().expect("sessions").get(w % n).cloned();
    let mut rng = (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let template = json_to_struct(flags(&args, 0).as_object().expect("an object"));
    while stop.next() {
        let started = Instant::now();
        let outcome: Result<(), String> = match args.scenario {
            Scenario::Health => health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|_| ())
                .map_err(|s| format!("{:?}", s.code())),
            Scenario::Get | Scenario::GetLocal => {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let (id, version) = {
                    let s = &sessions.lock().expect("sessions")[(rng % n as u64) as usize];
                    (s.id, s.version)
                };
                let min_version = (args.scenario == Scenario::GetLocal).then_some(version);
                let req = pb::GetSessionRequest {
                    session_id: id,
                    min_version,
                };
                stub.get_session(client.request(req))
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("{:?}", s.code()))
            }
            Scenario::Update => {
                let s = mine.as_mut().expect("a session per worker");
                let counter = s.flags["counter"].as_i64().unwrap_or(0) + 1;
                // The load generator shares the cores with what it measures: the
                // document is built once, and only the counter changes per request.
                let mut doc = template.clone();
                doc.fields
                    .insert("counter".into(), json_to_value(&json!(counter)));
                let req = pb::UpdateSessionRequest {
                    session_id: s.id,
                    flags: Some(doc),
                    expected_version: Some(s.version),
                    ..Default::default()
                };
                match stub.update_session(client.request(req)).await {
                    Ok(r) => {
                        s.version = r.into_inner().version;
                        s.flags.insert("counter".into(), json!(counter));
                        Ok(())
                    }
                    Err(status) if status.code() == Code::Aborted => {
                        t.conflicts += 1;
                        if let Some(current) = conflict_session(&status) {
                            *s = current;
                        }
                        Err("Aborted".into())
                    }
                    Err(status) => Err(format!("{:?}", status.code())),
                }
            }
            Scenario::Hot => {
                let before = client.stats();
                let known = mine.clone().expect("the hot session");
                let result = client
                    .update_from(known, |s| {
                        let n = s.flags["counter"].as_i64().unwrap_or(0);
                        s.flags.insert("counter".into(), json!(n + 1));
                    })
                    .await;
                let after = client.stats();
                t.conflicts += after.conflicts - before.conflicts;
                t.retries += after.retries - before.retries;
                match result {
                    Ok(s) => {
                        mine = Some(s);
                        Ok(())
                    }
                    Err(ClientError::Exhausted { last, .. }) => {
                        mine = last.map(|b| *b).or(mine);
                        Err("Exhausted".into())
                    }
                    Err(e) => Err(code_of(&e)),
                }
            }
            Scenario::MutateHot => {
                let id = mine.as_ref().expect("the hot session").id;
                client
                    .mutate(id, &[ops::increment_quest_steps("hot", 1)], None)
                    .await
                    .map(|_| ())
                    .map_err(|e| code_of(&e))
            }
            Scenario::Watch => unreachable!("watch has its own driver"),
        };
        match outcome {
            Ok(()) => t.ok(started.elapsed()),
            Err(code) => t.error(code),
        }
    }
    (t, mine)
}

/// `concurrency` watchers on one session; a writer updates it every `write_interval`.
/// Latency is from the writer sending a version to a watcher receiving it.
async fn watch(
    args: &Args,
    clients: &[SessionClient],
    sessions: &Arc<Mutex<Vec<Session>>>,
    stop: Stop,
) -> Result<Tally, BoxError> {
    let session = sessions.lock().expect("sessions")[0].clone();
    let sent: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let mut watchers = Vec::new();
    for w in 0..args.concurrency {
        let client = clients[w % clients.len()].clone();
        let mut stream = client.watch(session.id, session.version).await?;
        let sent = sent.clone();
        let deadline = stop.deadline;
        watchers.push(tokio::spawn(async move {
            let mut t = Tally::default();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, stream.next()).await {
                    Ok(Some(Ok(g))) => {
                        if let Some(at) = sent.lock().expect("sent").get(&g.version) {
                            t.ok(at.elapsed());
                        }
                    }
                    Ok(Some(Err(s))) => {
                        t.error(format!("{:?}", s.code()));
                        break;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            t
        }));
    }
    let writer = clients[0].clone();
    let mut known = sessions.lock().expect("sessions")[0].clone();
    let mut writes = Tally::default();
    while Instant::now() < stop.deadline {
        let next_version = known.version + 1;
        sent.lock().expect("sent").insert(next_version, Instant::now());
        let counter = known.flags["counter"].as_i64().unwrap_or(0) + 1;
        let req = pb::UpdateSessionRequest {
            session_id: known.id,
            flags: flags(args, counter).as_object().map(json_to_struct),
            expected_version: Some(known.version),
            ..Default::default()
        };
        match writer.stub().update_session(writer.request(req)).await {
            Ok(r) => known = Session::try_from(r.into_inner())?,
            Err(s) => writes.error(format!("writer {:?}", s.code())),
        }
        tokio::time::sleep(args.write_interval).await;
    }
    sessions.lock().expect("sessions")[0] = known;
    let mut total = Tally::default();
    for w in watchers {
        total.merge(w.await?);
    }
    total.errors.extend(writes.errors);
    Ok(total)
}
