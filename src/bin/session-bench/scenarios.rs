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
use session_service::pb::session_service_client::SessionServiceClient;
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
        Scenario::Update | Scenario::Mutate => args.sessions.max(args.concurrency),
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
    let n = sessions.lock().expect("sessions").len().max(1);
    let mine = sessions.lock().expect("sessions").get(w % n).cloned();
    let mut worker = Worker {
        health: HealthClient::new(client.channel()),
        stub: client.stub(),
        template: json_to_struct(flags(&args, 0).as_object().expect("an object")),
        rng: (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        tally: Tally::default(),
        client,
        sessions,
        n,
        mine,
    };
    while stop.next() {
        let started = Instant::now();
        match worker.step(args.scenario).await {
            Ok(()) => worker.tally.ok(started.elapsed()),
            Err(code) => worker.tally.error(code),
        }
    }
    (worker.tally, worker.mine)
}

/// One load-generating client and what it knows.
struct Worker {
    client: SessionClient,
    stub: SessionServiceClient<Channel>,
    health: HealthClient<Channel>,
    /// Every session of the run (readers pick at random), and how many.
    sessions: Arc<Mutex<Vec<Session>>>,
    n: usize,
    /// The session this worker writes, as it last knew it.
    mine: Option<Session>,
    rng: u64,
    /// The 1 KiB document, built once: the load generator shares the cores with
    /// what it measures, so only the counter changes per request.
    template: prost_types::Struct,
    tally: Tally,
}

/// One request's outcome: `Err` holds the status code's name.
type Step = Result<(), String>;

fn code_name(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

impl Worker {
    async fn step(&mut self, scenario: Scenario) -> Step {
        match scenario {
            Scenario::Health => self.health().await,
            Scenario::Get => self.get(false).await,
            Scenario::GetLocal => self.get(true).await,
            Scenario::Update => self.update().await,
            Scenario::Mutate => self.mutate().await,
            Scenario::Hot => self.hot().await,
            Scenario::MutateHot => self.mutate().await,
            Scenario::Watch => unreachable!("watch has its own driver"),
        }
    }

    async fn health(&mut self) -> Step {
        let req = HealthCheckRequest {
            service: String::new(),
        };
        self.health
            .check(req)
            .await
            .map(|_| ())
            .map_err(|s| code_name(&s))
    }

    /// A read of a random session: strong, or at least at the version last known.
    async fn get(&mut self, local: bool) -> Step {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let (id, version) = {
            let s = &self.sessions.lock().expect("sessions")[(self.rng % self.n as u64) as usize];
            (s.id, s.version)
        };
        let req = pb::GetSessionRequest {
            session_id: id,
            min_version: local.then_some(version),
        };
        let sent = self.stub.get_session(self.client.request(req)).await;
        sent.map(|_| ()).map_err(|s| code_name(&s))
    }

    /// A guarded write of this worker's own session.
    async fn update(&mut self) -> Step {
        let s = self.mine.as_mut().expect("a session per worker");
        let counter = s.flags["counter"].as_i64().unwrap_or(0) + 1;
        let mut doc = self.template.clone();
        doc.fields
            .insert("counter".into(), json_to_value(&json!(counter)));
        let req = pb::UpdateSessionRequest {
            session_id: s.id,
            flags: Some(doc),
            expected_version: Some(s.version),
            ..Default::default()
        };
        match self.stub.update_session(self.client.request(req)).await {
            Ok(r) => {
                s.version = r.into_inner().version;
                s.flags.insert("counter".into(), json!(counter));
                Ok(())
            }
            Err(status) if status.code() == Code::Aborted => {
                self.tally.conflicts += 1;
                if let Some(current) = conflict_session(&status) {
                    *s = current;
                }
                Err("Aborted".into())
            }
            Err(status) => Err(code_name(&status)),
        }
    }

    /// A server-side quest step on this worker's session: its own (`mutate`), or
    /// the one every worker shares (`mutate-hot`). Never conflicts.
    async fn mutate(&mut self) -> Step {
        let id = self.mine.as_ref().expect("a session per worker").id;
        let ops = [ops::increment_quest_steps("q", 1)];
        self.client
            .mutate(id, &ops, None)
            .await
            .map(|_| ())
            .map_err(|e| code_of(&e))
    }

    /// An increment of the one hot session through the client's retry loop.
    async fn hot(&mut self) -> Step {
        let before = self.client.stats();
        let known = self.mine.clone().expect("the hot session");
        let result = self
            .client
            .update_from(known, |s| {
                let n = s.flags["counter"].as_i64().unwrap_or(0);
                s.flags.insert("counter".into(), json!(n + 1));
            })
            .await;
        let after = self.client.stats();
        self.tally.conflicts += after.conflicts - before.conflicts;
        self.tally.retries += after.retries - before.retries;
        match result {
            Ok(s) => {
                self.mine = Some(s);
                Ok(())
            }
            Err(ClientError::Exhausted { last, .. }) => {
                self.mine = last.map(|b| *b).or(self.mine.take());
                Err("Exhausted".into())
            }
            Err(e) => Err(code_of(&e)),
        }
    }
}

/// One watcher: the latency of every version it receives that the writer timed.
async fn watcher(
    mut stream: tonic::Streaming<pb::GameSession>,
    sent: Arc<Mutex<HashMap<i64, Instant>>>,
    deadline: Instant,
) -> Tally {
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
                t.error(code_name(&s));
                break;
            }
            Ok(None) | Err(_) => break,
        }
    }
    t
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
        let client = &clients[w % clients.len()];
        let stream = client.watch(session.id, session.version).await?;
        watchers.push(tokio::spawn(watcher(stream, sent.clone(), stop.deadline)));
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
