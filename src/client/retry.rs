//! The retry loops: re-apply on ABORTED (with the current session from the details),
//! resend the same request on UNAVAILABLE / DEADLINE_EXCEEDED, give up on anything
//! else. One [`Budget`] (the backoff schedule from tokio-retry) serves both.

use std::{future::Future, time::Duration};

use tokio_retry::strategy::{ExponentialBackoff, jitter};
use tonic::{Code, Status};

use super::{
    error::{ClientError, is_transient},
    stats::ClientStats,
};
use crate::{
    domain::{Session, changes},
    wire::{json_to_struct, pb, status::conflict_session},
};

/// How many times, and how long apart, to try again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts after the first (default 3: 100 ms, 200 ms, 400 ms).
    pub max_retries: u32,
    /// The first delay.
    pub base: Duration,
    /// Each delay is the previous one times this (an integer).
    pub factor: u32,
    /// No delay is longer than this.
    pub max_delay: Duration,
    /// Up to this fraction of each delay is added at random, so clients that
    /// conflicted together do not retry together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base: Duration::from_millis(100),
            factor: 2,
            max_delay: Duration::from_secs(5),
            jitter: 0.25,
        }
    }
}

impl RetryPolicy {
    /// The delays before each retry: base, base·factor, base·factor², … plus jitter.
    pub fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        let factor = u64::from(self.factor.max(1));
        // tokio-retry's backoff yields factor^n · unit: unit = base / factor gives base, base·factor, …
        let unit = (self.base.as_millis() as u64 / factor).max(1);
        let fraction = self.jitter.clamp(0.0, 1.0);
        ExponentialBackoff::from_millis(factor)
            .factor(unit)
            .max_delay(self.max_delay)
            .map(move |d| d + jitter(d.mul_f64(fraction)))
            .take(self.max_retries as usize)
    }
}

/// The UpdateSession request that turns `base` into `next` (only changed fields).
/// `None` if nothing changed.
pub(crate) fn patch(base: &Session, next: &Session, request_id: &str) -> Option<pb::UpdateSessionRequest> {
    let mut req = pb::UpdateSessionRequest {
        session_id: base.id,
        expected_version: Some(base.version),
        request_id: request_id.to_owned(),
        ..Default::default()
    };
    let changed = changes(base, next);
    if changed.world_time {
        req.world_time = Some(next.world_time);
    }
    if changed.flags {
        req.flags = Some(json_to_struct(&next.flags));
    }
    if changed.relationships {
        req.relationships = Some(json_to_struct(&next.relationships));
    }
    (changed.world_time || changed.flags || changed.relationships).then_some(req)
}

/// The retry budget of one call, shared by every reason to try again: each retry
/// waits the policy's next delay; when none is left, the call is exhausted.
pub(crate) struct Budget<'a> {
    delays: Box<dyn Iterator<Item = Duration> + Send + 'a>,
    stats: &'a ClientStats,
    attempts: u32,
}

impl<'a> Budget<'a> {
    pub(crate) fn new(policy: &RetryPolicy, stats: &'a ClientStats) -> Self {
        Self {
            delays: Box::new(policy.delays()),
            stats,
            attempts: 1,
        }
    }

    /// Waits for the next attempt; false (and counted as exhausted) when the policy
    /// allows no more.
    pub(crate) async fn again(&mut self) -> bool {
        let Some(delay) = self.delays.next() else {
            self.stats.exhausted();
            return false;
        };
        self.stats.retry();
        tokio::time::sleep(delay).await;
        self.attempts += 1;
        true
    }

    /// The error of a call that ran out of attempts, with the last session the
    /// server sent (if any) and the status of the last failure.
    pub(crate) fn exhausted(&self, last: Option<Session>, status: Status) -> ClientError {
        ClientError::Exhausted {
            attempts: self.attempts,
            last: last.map(Box::new),
            status,
        }
    }
}

/// Sends one request through `call`, resending the identical request on
/// UNAVAILABLE / DEADLINE_EXCEEDED while the policy allows.
pub(crate) async fn resend<T, C, Fut>(
    policy: &RetryPolicy,
    stats: &ClientStats,
    mut call: C,
) -> Result<T, ClientError>
where
    C: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut budget = Budget::new(policy, stats);
    loop {
        match call().await {
            Ok(answer) => return Ok(answer),
            Err(status) if is_transient(&status) => {
                if !budget.again().await {
                    return Err(budget.exhausted(None, status));
                }
            }
            Err(status) => return Err(ClientError::Status(status)),
        }
    }
}

/// How one UpdateSession ended, for the loop.
enum Sent {
    Done(Session),
    /// ABORTED: re-apply on this session (from the details).
    Conflict(Session),
    /// Resend the same request.
    Transient(Status),
}

/// The first field UpdateSession cannot carry that `next` changed, with a hint.
fn unsendable(base: &Session, next: &Session) -> Option<(&'static str, &'static str)> {
    let fields = [
        ("id", base.id != next.id, ""),
        ("user_id", base.user_id != next.user_id, ""),
        ("scene_id", base.scene_id != next.scene_id, ""),
        (
            "current_node_id",
            base.current_node_id != next.current_node_id,
            " (use AdvanceSession)",
        ),
        ("world_id", base.world_id != next.world_id, ""),
        ("version", base.version != next.version, " (the server sets it)"),
        ("created_at", base.created_at != next.created_at, ""),
        (
            "updated_at",
            base.updated_at != next.updated_at,
            " (the server sets it)",
        ),
    ];
    fields
        .into_iter()
        .find(|(_, changed, _)| *changed)
        .map(|(f, _, hint)| (f, hint))
}

/// Applies `f` to a copy of `base`: the request that sends the change, or `None`
/// when it changes nothing (then `base` is the answer). A change UpdateSession
/// cannot carry is an error.
fn change_of<F>(
    base: &Session,
    request_id: &str,
    f: &mut F,
) -> Result<Option<pb::UpdateSessionRequest>, ClientError>
where
    F: FnMut(&mut Session) -> Result<(), ClientError>,
{
    let mut next = base.clone();
    f(&mut next)?;
    if let Some((field, hint)) = unsendable(base, &next) {
        return Err(ClientError::Unsendable { field, hint });
    }
    Ok(patch(base, &next, request_id))
}

/// One send, classified.
async fn send_once<S, Fut>(
    send: &mut S,
    stats: &ClientStats,
    request: pb::UpdateSessionRequest,
) -> Result<Sent, ClientError>
where
    S: FnMut(pb::UpdateSessionRequest) -> Fut,
    Fut: Future<Output = Result<pb::GameSession, Status>>,
{
    let started = std::time::Instant::now();
    let sent = send(request).await;
    stats.call("UpdateSession", started.elapsed().as_secs_f64());
    match sent {
        Ok(g) => Ok(Sent::Done(Session::try_from(g)?)),
        Err(status) if status.code() == Code::Aborted => {
            stats.conflict();
            let current = conflict_session(&status).ok_or(ClientError::Status(status))?;
            tracing::debug!(
                session_id = current.id,
                version = current.version,
                "version conflict; re-applying"
            );
            Ok(Sent::Conflict(current))
        }
        Err(status) if is_transient(&status) => {
            tracing::debug!(code = ?status.code(), "transient failure; resending the same request");
            Ok(Sent::Transient(status))
        }
        Err(status) => Err(ClientError::Status(status)),
    }
}

/// Applies `f` to `base` and sends it through `send`, retrying per `policy`: on
/// ABORTED `f` is applied again to the session from the details; on UNAVAILABLE /
/// DEADLINE_EXCEEDED the same request is resent (same request id, so it applies
/// at most once). Conflicts and resends share one budget.
///
/// `send` performs one UpdateSession; it is a parameter so the loop can be tested
/// without a network. `f` may fail (a helper refusing the state), which ends the loop.
pub(crate) async fn update_loop<F, S, Fut>(
    policy: &RetryPolicy,
    stats: &ClientStats,
    base: Session,
    request_id: String,
    mut f: F,
    mut send: S,
) -> Result<Session, ClientError>
where
    F: FnMut(&mut Session) -> Result<(), ClientError>,
    S: FnMut(pb::UpdateSessionRequest) -> Fut,
    Fut: Future<Output = Result<pb::GameSession, Status>>,
{
    let mut budget = Budget::new(policy, stats);
    let mut current = base;
    let Some(mut request) = change_of(&current, &request_id, &mut f)? else {
        return Ok(current);
    };
    loop {
        let failed = match send_once(&mut send, stats, request.clone()).await? {
            Sent::Done(session) => return Ok(session),
            Sent::Conflict(server) => {
                current = server;
                Status::aborted("version conflicts outlasted the retry policy")
            }
            Sent::Transient(status) => status,
        };
        if !budget.again().await {
            return Err(budget.exhausted(Some(current), failed));
        }
        if failed.code() == Code::Aborted {
            match change_of(&current, &request_id, &mut f)? {
                Some(next) => request = next,
                // Nothing left to change on the new state: it is the answer.
                None => return Ok(current),
            }
        }
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
