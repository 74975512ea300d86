//! The sender task: one mutation at a time, in order; outages are waited out (the
//! handle says it is offline), refusals go to the merge hook, if there is one.

use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::Code;

use super::{Conflict, Merge, Pending, Shared, merge::MAX_MERGES};
use crate::{
    client::{ClientError, SessionOp, apply_ops},
    domain::{Session, diff},
};

pub(super) async fn send_in_order(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(p) = rx.recv().await {
        // Dropped at its deadline before its turn: never sent.
        if !shared.is_pending(p.id) {
            continue;
        }
        let result = deliver(&shared, &p).await;
        let still_queued = shared.is_pending(p.id);
        match &result {
            Ok(session) => shared.settle(p.id, Some(session.clone())),
            Err(e) if still_queued => {
                let last = match e {
                    ClientError::Exhausted { last, .. } => last.as_deref().cloned(),
                    _ => None,
                };
                shared.settle(p.id, last);
                shared.client.stats.rolled_back();
            }
            // Dropped at its deadline: already taken back and counted.
            Err(_) => {}
        }
        if let Some(done) = p.done {
            let _ = done.send(result);
        }
    }
}

/// Sends one mutation until the server takes it or it is given up.
async fn deliver(shared: &Shared, p: &Pending) -> Result<Session, ClientError> {
    let mut ops = p.ops.clone();
    let mut merges = 0;
    loop {
        if !shared.is_pending(p.id) {
            return Err(ClientError::Deadline { kept: false });
        }
        let base = shared.confirmed();
        let attempt = shared
            .client
            .try_update_from(base.clone(), p.request_id.clone(), |s| apply_ops(s, &ops));
        // Dropped at its deadline meanwhile: stop between resends (a request the
        // server already received may still have been applied; the view then learns
        // it from the server like any other write).
        let sent = tokio::select! {
            sent = attempt => sent,
            () = dropped(shared, p.id) => return Err(ClientError::Deadline { kept: false }),
        };
        let error = match sent {
            Ok(session) => {
                shared.reached(true);
                return Ok(session);
            }
            Err(e) if e.is_transient() => {
                tracing::debug!(error = %e, "server unreachable; mutation stays pending");
                shared.reached(false);
                tokio::time::sleep(shared.options.reconnect_interval).await;
                continue;
            }
            Err(e) => e,
        };
        shared.reached(true);
        let Some(hook) = shared
            .merge
            .as_ref()
            .filter(|_| merges < MAX_MERGES && refusal(&error))
        else {
            return Err(error);
        };
        let Some(conflict) = conflict(shared, &base, &ops, &error).await else {
            return Err(error);
        };
        shared.update(|state| state.confirm(conflict.current.clone()));
        merges += 1;
        match hook(&conflict) {
            Merge::Drop => return Err(error),
            Merge::Reapply => {}
            Merge::Replace(replacement) => ops = replacement,
        }
    }
}

/// Resolves once mutation `id` has left the queue (dropped at its deadline).
async fn dropped(shared: &Shared, id: u64) {
    while shared.is_pending(id) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A refusal a merge can answer: the change no longer applies to the current
/// session, conflicts outlasted the retries, or the server refused the result.
fn refusal(e: &ClientError) -> bool {
    match e {
        ClientError::Mutation(_) | ClientError::Exhausted { .. } => true,
        ClientError::Status(s) => matches!(s.code(), Code::FailedPrecondition | Code::InvalidArgument),
        _ => false,
    }
}

/// What the hook is shown: the intent, the server's session now (from the error,
/// or read), and what the caller expected against it.
async fn conflict(
    shared: &Shared,
    base: &Session,
    ops: &[SessionOp],
    error: &ClientError,
) -> Option<Conflict> {
    let current = match error {
        ClientError::Exhausted { last: Some(last), .. } => Session::clone(last),
        _ => shared.client.get_at_least(base.id, base.version).await.ok()?,
    };
    let mut expected = base.clone();
    if apply_ops(&mut expected, ops).is_err() {
        expected = base.clone();
    }
    Some(Conflict {
        intent: ops.to_vec(),
        diff: diff(Some(&current), &expected),
        current,
        reason: error.to_string(),
    })
}
