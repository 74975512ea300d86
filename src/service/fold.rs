//! Writes without an expected version (MutateSession, and UpdateSession or
//! AdvanceSession without `expected_version`) never answer ABORTED: writers of one
//! session take turns. On this replica they queue per session, and one task per
//! busy session drains the queue: it takes what is queued (never waiting for
//! company), plans each write on the state the one before leaves, and writes them
//! all as ONE guarded write ([`Store::cas_chain`]). Each write keeps its own version,
//! event and idempotency record and gets its own answer, as if it had been written
//! alone right after the one before it; a hot session costs one statement per
//! round of queued writers instead of one per write.
//!
//! A chain that loses to another replica is planned again from the newer version;
//! one that fails as a whole (a request id already recorded, say) goes again one
//! write at a time, so each caller gets exactly the answer it would have had alone.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use tokio::sync::oneshot;
use tracing::Instrument;

use super::{Caller, ServiceError, Sessions};
use crate::{
    domain::{Session, Write, plan},
    store::{Link, Store, StoreError},
};

/// What a write without an expected version returns: the session and whether it changed.
pub(super) type Answer = Result<(Arc<Session>, bool), ServiceError>;

/// One queued write and where its answer goes.
pub(super) struct Waiting {
    caller: Caller,
    write: Write,
    reply: oneshot::Sender<Answer>,
    /// The caller's span: a round runs under its first write's.
    span: tracing::Span,
}

/// The queues of sessions with writes in flight on this replica; a session is here
/// exactly while a task drains its queue.
pub(super) type Queues = Mutex<HashMap<i64, VecDeque<Waiting>>>;

/// How one write of a chain ends, by position.
enum Outcome {
    /// Its link's index.
    Written(usize),
    /// It changed nothing, on the state after this many links.
    Unchanged(usize),
    Failed(ServiceError),
}

impl Sessions {
    /// Queues `w` behind this replica's other writers of its session and waits for its answer.
    pub(super) async fn serialized(&self, caller: &Caller, w: &Write) -> Answer {
        let id = w.session_id.get();
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            caller: *caller,
            write: w.clone(),
            reply,
            span: tracing::Span::current(),
        };
        let lead = {
            let mut queues = self.inner.queues.lock().expect("write queues");
            let lead = !queues.contains_key(&id);
            queues.entry(id).or_default().push_back(waiting);
            lead
        };
        if lead {
            // A task of its own: the queue keeps draining if this caller goes away.
            tokio::spawn(self.clone().drain(id));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(ServiceError::Internal("the session's writer task ended".into())))
    }

    /// Writes the session's queue, a round at a time, until it is empty.
    async fn drain(self, id: i64) {
        loop {
            let round = {
                let mut queues = self.inner.queues.lock().expect("write queues");
                let Some(queue) = queues.get_mut(&id) else { return };
                let round = next_round(queue, self.inner.settings.max_folded_writes);
                if round.is_empty() {
                    queues.remove(&id);
                    return;
                }
                round
            };
            let span = round[0].span.clone();
            self.write_round(round).instrument(span).await;
        }
    }

    /// One round: a single write as before, several as one chain (or, if the chain
    /// cannot be written, one at a time). Answers go out once the shared cache has
    /// the new state, in a task of their own, so the next round starts meanwhile.
    async fn write_round(&self, mut round: Vec<Waiting>) {
        if round.len() > 1 {
            match self.chain(&round).await {
                Some((written, outcomes)) => {
                    // Counted once they did share a statement (not for a split round).
                    self.inner.metrics.folded.inc_by(round.len() as u64 - 1);
                    self.answer_chain(round, written, outcomes);
                    return;
                }
                None => {
                    self.inner.metrics.folded_fallbacks.inc();
                }
            }
        }
        for Waiting {
            caller, write, reply, ..
        } in round.drain(..)
        {
            let written = self.in_turn(&caller, &write).await;
            let this = self.clone();
            tokio::spawn(async move {
                let answer = match written {
                    Ok((session, changed, true)) => {
                        this.committed(&session).await.map(|()| (session, changed))
                    }
                    Ok((session, changed, false)) => Ok((session, changed)),
                    Err(e) => Err(e),
                };
                let _ = reply.send(answer);
            });
        }
    }

    /// Plans every write of `round` on the state the one before leaves and writes
    /// them as one. `None` when it cannot (the session cannot be read, the chain
    /// keeps losing to other replicas, or fails as a whole): then one at a time.
    async fn chain(&self, round: &[Waiting]) -> Option<(Vec<Arc<Session>>, Vec<Outcome>)> {
        let first = &round[0];
        let id = first.write.session_id.get();
        let owner = first.caller.owner();
        let limits = self.inner.settings.json_limits;
        let mut base = self.copy_or_read(&first.caller, id, |_| true).await.ok()?;
        for _ in 0..super::OPTIMISTIC_ROUNDS {
            let at = Store::now();
            let mut links: Vec<Link<'_>> = Vec::with_capacity(round.len());
            let mut outcomes = Vec::with_capacity(round.len());
            for waiting in round {
                let current = links.last().map_or(&*base, |l: &Link<'_>| &l.next);
                let rules = self.inner.store.rules(current.world_id).await.ok()?;
                match plan(current, None, &waiting.write.change, &rules, &limits) {
                    Err(e) => outcomes.push(Outcome::Failed(e.into())),
                    Ok(None) => outcomes.push(Outcome::Unchanged(links.len())),
                    Ok(Some(planned)) => {
                        let next = Session {
                            version: current.version + 1,
                            updated_at: at,
                            ..planned.next
                        };
                        outcomes.push(Outcome::Written(links.len()));
                        links.push(Link {
                            next,
                            rules_version: planned.rules_version,
                            meta: self.meta(&waiting.caller, &waiting.write),
                        });
                    }
                }
            }
            match self.inner.store.cas_chain(owner, &base, links).await {
                Ok(written) => {
                    let written: Vec<Arc<Session>> = written.into_iter().map(Arc::new).collect();
                    if let Some(last) = written.last() {
                        self.inner.cache.remember(last);
                    }
                    let mut states = Vec::with_capacity(written.len() + 1);
                    states.push(base);
                    states.extend(written);
                    return Some((states, outcomes));
                }
                // Another replica wrote meanwhile: plan again from its version.
                Err(StoreError::Conflict(current)) => base = Arc::new(*current),
                Err(_) => return None,
            }
        }
        None
    }

    /// Answers a written chain: `states` is the base, then each link's session.
    fn answer_chain(&self, round: Vec<Waiting>, states: Vec<Arc<Session>>, outcomes: Vec<Outcome>) {
        let this = self.clone();
        tokio::spawn(async move {
            // Every answer past the base rests on the chain's last state being visible
            // (UNAVAILABLE otherwise, as for a single write: see `committed`).
            let visible = match states.last() {
                Some(last) if states.len() > 1 => this.committed(last).await.is_ok(),
                _ => true,
            };
            let after = |n: usize, changed: bool| {
                if visible {
                    Ok((states[n].clone(), changed))
                } else {
                    Err(ServiceError::Unconfirmed)
                }
            };
            for (waiting, outcome) in round.into_iter().zip(outcomes) {
                let answer = match outcome {
                    Outcome::Failed(e) => Err(e),
                    Outcome::Written(i) => after(i + 1, true),
                    Outcome::Unchanged(0) => Ok((states[0].clone(), false)),
                    Outcome::Unchanged(n) => after(n, false),
                };
                let _ = waiting.reply.send(answer);
            }
        });
    }
}

/// The next round of a session's queue: its first write and those after it that
/// can share one chain (at most `max`; same owner; a request id at most once, so a resend waits
/// for the round after its first attempt).
fn next_round(queue: &mut VecDeque<Waiting>, max: usize) -> Vec<Waiting> {
    let mut round: Vec<Waiting> = Vec::new();
    while let Some(next) = queue.front() {
        if let Some(first) = round.first() {
            let same_owner = next.caller.owner() == first.caller.owner();
            let repeated = next.write.request_id.is_some()
                && round.iter().any(|w| {
                    w.write.request_id == next.write.request_id && w.caller.user_id == next.caller.user_id
                });
            if round.len() >= max || !same_owner || repeated {
                break;
            }
        }
        round.extend(queue.pop_front());
    }
    round
}
