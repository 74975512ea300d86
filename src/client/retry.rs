//! The retry loop: re-apply on ABORTED (with the current session from the details),
//! resend the same request on UNAVAILABLE / DEADLINE_EXCEEDED, give up on anything
//! else. Backoff schedule from tokio-retry.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio_retry::{
    RetryIf,
    strategy::{ExponentialBackoff, jitter},
};
use tonic::{Code, Status};

use super::error::{ClientError, ClientStats, is_transient};
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

/// What one attempt sends: everything needed to resend it unchanged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attempt {
    pub request: pb::UpdateSessionRequest,
    /// The session the change was computed from.
    pub base: Session,
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

enum Failure {
    /// Re-apply on this session.
    Conflict(Session),
    /// Resend the same request.
    Transient(Status),
    Fatal(ClientError),
}

/// Applies `f` to `base` and sends it through `send`, retrying per `policy`.
///
/// `send` performs one UpdateSession; it is a parameter so the loop can be tested
/// without a network. `f` may fail (a helper refusing the state), which ends the loop.
pub(crate) async fn update_loop<F, S, Fut>(
    policy: &RetryPolicy,
    stats: &ClientStats,
    base: Session,
    request_id: String,
    f: F,
    send: S,
) -> Result<Session, ClientError>
where
    F: FnMut(&mut Session) -> Result<(), ClientError>,
    S: FnMut(pb::UpdateSessionRequest) -> Fut,
    Fut: Future<Output = Result<pb::GameSession, Status>>,
{
    // The state the attempts share: the latest server session, the pending resend,
    // and the last error. A Mutex only to be Send; it is never held across an await.
    struct State<F, S> {
        base: Session,
        resend: Option<Attempt>,
        f: F,
        send: S,
        attempts: u32,
    }
    let state = Arc::new(Mutex::new(State {
        base,
        resend: None,
        f,
        send,
        attempts: 0,
    }));
    let request_id = &request_id;
    let action = || {
        let state = state.clone();
        async move {
            let (request, base) = {
                let mut s = state.lock().expect("retry state");
                s.attempts += 1;
                if s.attempts > 1 {
                    stats.retry();
                }
                match s.resend.take() {
                    Some(a) => (a.request, a.base),
                    None => {
                        let base = s.base.clone();
                        let mut next = base.clone();
                        (s.f)(&mut next).map_err(Failure::Fatal)?;
                        match patch(&base, &next, request_id) {
                            Some(req) => (req, base),
                            // Nothing to change: the current session is the answer.
                            None => return Ok(base),
                        }
                    }
                }
            };
            let sent = {
                let mut s = state.lock().expect("retry state");
                (s.send)(request.clone())
            };
            match sent.await {
                Ok(g) => Session::try_from(g).map_err(|e| Failure::Fatal(e.into())),
                Err(status) if status.code() == Code::Aborted => {
                    stats.conflict();
                    match conflict_session(&status) {
                        Some(current) => {
                            tracing::debug!(
                                session_id = current.id,
                                version = current.version,
                                "version conflict; re-applying"
                            );
                            state.lock().expect("retry state").base = current.clone();
                            Err(Failure::Conflict(current))
                        }
                        None => Err(Failure::Fatal(ClientError::Status(status))),
                    }
                }
                Err(status) if is_transient(&status) => {
                    tracing::debug!(code = ?status.code(), "transient failure; resending the same request");
                    state.lock().expect("retry state").resend = Some(Attempt { request, base });
                    Err(Failure::Transient(status))
                }
                Err(status) => Err(Failure::Fatal(ClientError::Status(status))),
            }
        }
    };
    let outcome = RetryIf::start(policy.delays(), action, |e: &Failure| {
        !matches!(e, Failure::Fatal(_))
    })
    .await;
    let attempts = state.lock().expect("retry state").attempts;
    match outcome {
        Ok(session) => Ok(session),
        Err(Failure::Fatal(e)) => Err(e),
        Err(Failure::Conflict(last)) => {
            stats.exhausted();
            let status = Status::aborted("version conflicts outlasted the retry policy");
            Err(ClientError::Exhausted {
                attempts,
                last: Some(Box::new(last)),
                status,
            })
        }
        Err(Failure::Transient(status)) => {
            stats.exhausted();
            let last = Some(Box::new(state.lock().expect("retry state").base.clone()));
            Err(ClientError::Exhausted {
                attempts,
                last,
                status,
            })
        }
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
