//! The workload: clients mixing every write path and both kinds of read through the
//! dropping proxies, and a WatchSession stream per session, each recording what it
//! sent and what it was told (the history the checker proves).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use session_service::{
    client::{AdvanceOutcome, ClientError, Credentials, SessionClient, UpdateOutcome, new_request_id, ops},
    domain::Session,
    pb,
};
use tonic::{Code, transport::Channel};

use crate::{
    common::obj,
    history::{Kind, Outcome, Read, Watch, Write},
    nemesis::Rng,
};

/// What every task shares.
pub struct Shared {
    pub ids: Vec<i64>,
    /// The highest version acknowledged to anyone, per session: a strong read sent
    /// after that acknowledgement may not answer with less.
    pub acked_max: Vec<AtomicI64>,
    pub stop: AtomicBool,
    pub began: Instant,
    /// When each operation succeeded (ms since the start): the gaps are unavailability.
    pub successes: Mutex<Vec<u64>>,
}

impl Shared {
    fn succeeded(&self) {
        let at = self.began.elapsed().as_millis() as u64;
        self.successes.lock().unwrap().push(at);
    }
}

/// One client's history.
#[derive(Default)]
pub struct History {
    pub writes: Vec<Write>,
    pub reads: Vec<Read>,
    pub watches: Vec<Watch>,
    /// Operations by kind, as sent.
    pub ops: BTreeMap<String, u64>,
    /// Failures by gRPC code (or client error kind), for the report.
    pub errors: BTreeMap<String, u64>,
    /// The first few failures that were neither outages nor conflicts, in full.
    pub odd_errors: Vec<String>,
    /// Acknowledged idempotent writes sent again with the same request id.
    pub replays: u64,
    /// ... that were not answered with the first answer's version.
    pub replay_mismatches: Vec<String>,
}

impl History {
    pub fn merge(&mut self, other: History) {
        self.writes.extend(other.writes);
        self.reads.extend(other.reads);
        self.watches.extend(other.watches);
        for (k, n) in other.ops {
            *self.ops.entry(k).or_default() += n;
        }
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.odd_errors.extend(other.odd_errors);
        self.odd_errors.truncate(10);
        self.replays += other.replays;
        self.replay_mismatches.extend(other.replay_mismatches);
    }

    fn error(&mut self, e: &ClientError) {
        let name = match e.code() {
            Some(code) => format!("{code:?}"),
            None => format!("{e}").split(':').next().unwrap_or("other").to_string(),
        };
        *self.errors.entry(name).or_default() += 1;
        if !e.is_transient() && e.code() != Some(Code::Aborted) && self.odd_errors.len() < 10 {
            self.odd_errors.push(e.to_string());
        }
    }
}

pub fn client(addr: &str) -> SessionClient {
    let channel = Channel::from_shared(addr.to_string()).unwrap().connect_lazy();
    SessionClient::new(channel).with_credentials(Credentials::UserId(1))
}

/// The two lists a session's writes append to.
pub fn lists(s: &Session) -> (Vec<String>, Vec<(String, i64)>) {
    let log = s.flags["log"]
        .as_array()
        .map(|l| l.iter().filter_map(|t| t.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let items = s
        .flags
        .get("inventory")
        .and_then(|i| i["items"].as_array())
        .map(|l| {
            l.iter()
                .map(|i| {
                    (
                        i["id"].as_str().unwrap_or("").to_string(),
                        i["qty"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (log, items)
}

fn append(s: &mut Session, token: &str) {
    let log = s.flags.entry("log").or_insert_with(|| json!([]));
    if let Value::Array(l) = log {
        l.push(json!(token));
    }
}

/// A refusal the server answered for good: the write did not happen.
fn refused(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(Code::Aborted | Code::FailedPrecondition | Code::InvalidArgument | Code::NotFound)
    ) && !e.is_transient()
}

/// One client: random operations until told to stop.
pub async fn run_client(n: usize, addr: String, shared: Arc<Shared>, mut rng: Rng) -> History {
    let c = client(&addr);
    let mut h = History::default();
    let mut seen: HashMap<usize, i64> = HashMap::new();
    let mut op = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let s = rng.range(0, shared.ids.len() as u64) as usize;
        let token = format!("c{n}-{op}");
        op += 1;
        let roll = rng.percent();
        let kind = match roll {
            0..30 => "update",
            30..45 => "resend",
            45..65 => "mutate",
            65..75 => "advance",
            75..90 => "get",
            _ => "get_min_version",
        };
        *h.ops.entry(kind.into()).or_default() += 1;
        let w = |kind, outcome| Write {
            client: n,
            session: s,
            kind,
            token: Some(token.clone()),
            outcome,
        };
        let outcome = match kind {
            "update" => update(&c, &shared, s, &token, &mut h)
                .await
                .map(|o| w(Kind::Update, o)),
            "resend" => resend(&c, &shared, s, &token, &mut h)
                .await
                .map(|o| w(Kind::Resend, o)),
            "mutate" => Some(w(Kind::Mutate, mutate(&c, &shared, s, &token, &mut h).await)),
            "advance" => advance(&c, &shared, s, &mut h).await.map(|o| Write {
                token: None,
                ..w(Kind::Advance, o)
            }),
            _ => {
                let strong = kind == "get";
                let at_least = if strong {
                    shared.acked_max[s].load(Ordering::SeqCst)
                } else {
                    // Sessions start at version 1 (and min_version must be at least 1).
                    seen.get(&s).copied().unwrap_or(1)
                };
                let id = shared.ids[s];
                let sent_ms = shared.began.elapsed().as_millis() as u64;
                let got = if strong {
                    c.get(id).await
                } else {
                    c.get_at_least(id, at_least).await
                };
                match got {
                    Ok(session) => {
                        shared.succeeded();
                        let (log, items) = lists(&session);
                        h.reads.push(Read {
                            client: n,
                            session: s,
                            version: session.version,
                            log,
                            items: items.into_iter().map(|(t, _)| t).collect(),
                            at_least,
                            strong,
                            sent_ms,
                        });
                        let v = seen.entry(s).or_default();
                        *v = (*v).max(session.version);
                    }
                    Err(e) => h.error(&e),
                }
                None
            }
        };
        if let Some(write) = outcome {
            if let Outcome::Acked(v) = write.outcome {
                shared.acked_max[s].fetch_max(v, Ordering::SeqCst);
                shared.succeeded();
                let seen = seen.entry(s).or_default();
                *seen = (*seen).max(v);
            }
            h.writes.push(write);
        }
    }
    h
}

/// UpdateSession through the client's retry loop (`None`: the first read failed,
/// nothing was sent).
async fn update(
    c: &SessionClient,
    shared: &Shared,
    s: usize,
    token: &str,
    h: &mut History,
) -> Option<Outcome> {
    let base = base(c, shared, s, h).await?;
    let result = c.update_from(base, |s| append(s, token)).await;
    Some(outcome_of(result.map(|s| s.version), h))
}

/// A strong read for a write to start from (`None`, counted, if it failed).
async fn base(c: &SessionClient, shared: &Shared, s: usize, h: &mut History) -> Option<Session> {
    c.get(shared.ids[s]).await.map_err(|e| h.error(&e)).ok()
}

/// What a write's answer says happened: acknowledged at a version, refused for good,
/// or unknown (no answer).
fn outcome_of(answer: Result<i64, ClientError>, h: &mut History) -> Outcome {
    match answer {
        Ok(version) => Outcome::Acked(version),
        Err(e) => {
            h.error(&e);
            if refused(&e) {
                Outcome::Refused
            } else {
                Outcome::Unknown
            }
        }
    }
}

/// An idempotent write: one request id kept, resent from a fresh read until it is
/// acknowledged (or 60 s pass); then sent once more, which must be answered with the
/// first answer's version.
async fn resend(
    c: &SessionClient,
    shared: &Shared,
    s: usize,
    token: &str,
    h: &mut History,
) -> Option<Outcome> {
    let id = shared.ids[s];
    let request_id = new_request_id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    let written = loop {
        if Instant::now() > deadline {
            let refused = last.as_ref().is_some_and(refused);
            return Some(if refused {
                Outcome::Refused
            } else {
                Outcome::Unknown
            });
        }
        let base = match c.get(id).await {
            Ok(base) => base,
            Err(e) => {
                h.error(&e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match c
            .update_idempotent(base, request_id.clone(), |s| append(s, token))
            .await
        {
            Ok(written) => break written,
            Err(e) => {
                h.error(&e);
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // The same request id again, from a version that has moved on: only the record
    // can answer it, with the version of the first answer.
    let again = pb::UpdateSessionRequest {
        session_id: id,
        flags: Some(obj(Value::Object(written.flags.clone()))),
        expected_version: Some(written.version - 1),
        request_id: request_id.clone(),
        ..Default::default()
    };
    match c.update(again).await {
        Ok(UpdateOutcome::Updated(s)) if s.version == written.version => h.replays += 1,
        Ok(other) => {
            h.replays += 1;
            h.replay_mismatches.push(format!(
                "request {request_id} acknowledged at {} was answered {other:?} when sent again",
                written.version
            ));
        }
        // No answer this time (an outage): nothing learned.
        Err(e) => h.error(&e),
    }
    Some(Outcome::Acked(written.version))
}

/// MutateSession without expected_version: an inventory item named by the token.
async fn mutate(c: &SessionClient, shared: &Shared, s: usize, token: &str, h: &mut History) -> Outcome {
    let answer = c
        .mutate(shared.ids[s], &[ops::add_inventory_item(token, 1)], None)
        .await;
    outcome_of(answer.map(|s| s.version), h)
}

/// AdvanceSession between nodes 1 and 2 (moved elsewhere meanwhile: refused).
async fn advance(c: &SessionClient, shared: &Shared, s: usize, h: &mut History) -> Option<Outcome> {
    let base = base(c, shared, s, h).await?;
    let to = if base.current_node_id == 1 { 2 } else { 1 };
    Some(match c.advance(&base, 100 + to, to).await {
        Ok(AdvanceOutcome::Advanced(s)) => Outcome::Acked(s.version),
        Ok(AdvanceOutcome::Moved { .. }) => Outcome::Refused,
        Err(e) => outcome_of(Err(e), h),
    })
}

/// A WatchSession subscription kept up (re-subscribing from the last version seen)
/// until told to stop.
pub async fn run_watcher(s: usize, addr: String, shared: Arc<Shared>) -> History {
    let c = client(&addr);
    let mut h = History::default();
    let mut versions = Vec::new();
    let mut since = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let mut stream = match c.watch(shared.ids[s], since).await {
            Ok(stream) => stream,
            Err(e) => {
                h.error(&e);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        *h.ops.entry("watch_subscribe".into()).or_default() += 1;
        loop {
            let next = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
            match next {
                Ok(Ok(Some(session))) => {
                    versions.push(session.version);
                    since = since.max(session.version);
                }
                Ok(_) => break,
                Err(_) if shared.stop.load(Ordering::SeqCst) => break,
                Err(_) => {}
            }
        }
    }
    h.watches.push(Watch { session: s, versions });
    h
}
