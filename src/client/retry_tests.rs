//! The retry loop without a network, on a paused clock.

use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::{domain::DomainError, wire::status::conflict};

fn session(version: i64, counter: i64) -> Session {
    let flags = json!({ "counter": counter }).as_object().unwrap().clone();
    Session {
        id: 1,
        version,
        flags,
        ..crate::domain::sample_session()
    }
}

fn increment(s: &mut Session) -> Result<(), ClientError> {
    let n = s.flags["counter"].as_i64().unwrap();
    s.flags.insert("counter".into(), json!(n + 1));
    Ok(())
}

/// A fake server: answers each request with the next scripted reply, recording
/// the request and the (paused-clock) time it arrived.
#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<Vec<Result<pb::GameSession, Status>>>>,
    seen: Arc<Mutex<Vec<(Instant, pb::UpdateSessionRequest)>>>,
}

impl Script {
    fn new(mut replies: Vec<Result<pb::GameSession, Status>>) -> Self {
        replies.reverse();
        Self {
            replies: Arc::new(Mutex::new(replies)),
            seen: Arc::default(),
        }
    }

    fn send(
        &self,
    ) -> impl FnMut(pb::UpdateSessionRequest) -> futures::future::Ready<Result<pb::GameSession, Status>> {
        let this = self.clone();
        move |req| {
            this.seen.lock().unwrap().push((Instant::now(), req));
            futures::future::ready(this.replies.lock().unwrap().pop().expect("a scripted reply"))
        }
    }

    /// The retry loop with the default policy from session v1 (counter 0) against
    /// this script.
    async fn run(
        &self,
        change: impl FnMut(&mut Session) -> Result<(), ClientError>,
    ) -> Result<Session, ClientError> {
        self.run_counted(&ClientStats::default(), change).await
    }

    /// [`run`](Self::run), counting into `stats`.
    async fn run_counted(
        &self,
        stats: &ClientStats,
        change: impl FnMut(&mut Session) -> Result<(), ClientError>,
    ) -> Result<Session, ClientError> {
        let policy = RetryPolicy::default();
        update_loop(&policy, stats, session(1, 0), "r".into(), change, self.send()).await
    }

    fn gaps_ms(&self) -> Vec<u128> {
        let seen = self.seen.lock().unwrap();
        seen.windows(2).map(|w| (w[1].0 - w[0].0).as_millis()).collect()
    }
}

fn aborted(current: &Session) -> Result<pb::GameSession, Status> {
    Err(conflict(current, current.version - 1))
}

#[tokio::test(start_paused = true)]
async fn conflicts_retry_after_100_200_400_ms_plus_jitter_then_give_up_with_the_last_session() {
    let script = Script::new(vec![
        aborted(&session(2, 5)),
        aborted(&session(3, 6)),
        aborted(&session(4, 7)),
        aborted(&session(5, 8)),
    ]);
    let stats = ClientStats::default();
    let err = script.run_counted(&stats, increment).await.unwrap_err();
    match err {
        ClientError::Exhausted {
            attempts,
            last,
            status,
        } => {
            assert_eq!(attempts, 4);
            assert_eq!(last.unwrap().version, 5);
            assert_eq!(status.code(), Code::Aborted);
        }
        other => panic!("{other:?}"),
    }
    let gaps = script.gaps_ms();
    assert_eq!(gaps.len(), 3);
    for (gap, nominal) in gaps.iter().zip([100u128, 200, 400]) {
        assert!(
            (nominal..=nominal * 5 / 4).contains(gap),
            "gap {gap} ms for {nominal} ms: {gaps:?}"
        );
    }
    assert_eq!(
        stats.snapshot(),
        crate::client::StatsSnapshot {
            conflicts: 4,
            retries: 3,
            exhaustions: 1,
            ..Default::default()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_conflict_re_applies_the_change_on_the_session_from_the_details() {
    let server_now = session(7, 41);
    let mut done = session(8, 42);
    done.flags.insert("counter".into(), json!(42));
    let script = Script::new(vec![aborted(&server_now), Ok(pb::GameSession::from(&done))]);
    let stats = ClientStats::default();
    let got = script.run_counted(&stats, increment).await.unwrap();
    assert_eq!(got.version, 8);
    let seen = script.seen.lock().unwrap();
    let second = &seen[1].1;
    assert_eq!(
        second.expected_version,
        Some(7),
        "sent against the version from the details"
    );
    assert_eq!(
        second.flags.as_ref().unwrap().fields["counter"],
        crate::wire::json_to_value(&json!(42))
    );
    assert_eq!(second.request_id, "r", "one request id per logical mutation");
}

#[tokio::test(start_paused = true)]
async fn unavailable_resends_the_same_request_without_re_applying() {
    let mut ok = session(2, 1);
    ok.flags.insert("counter".into(), json!(1));
    let script = Script::new(vec![
        Err(Status::unavailable("down")),
        Err(Status::deadline_exceeded("slow")),
        Ok(pb::GameSession::from(&ok)),
    ]);
    let calls = Arc::new(Mutex::new(0));
    let counted = {
        let calls = calls.clone();
        move |s: &mut Session| {
            *calls.lock().unwrap() += 1;
            increment(s)
        }
    };
    let got = script.run(counted).await.unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(*calls.lock().unwrap(), 1, "the change was computed once");
    let seen = script.seen.lock().unwrap();
    assert!(
        seen.iter().all(|(_, r)| r == &seen[0].1),
        "byte-for-byte the same request"
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_broken_under_the_call_is_resent_like_unavailable() {
    let mut broken = Status::cancelled("operation was canceled");
    broken.set_source(std::sync::Arc::new(std::io::Error::from(
        std::io::ErrorKind::BrokenPipe,
    )));
    let mut ok = session(2, 1);
    ok.flags.insert("counter".into(), json!(1));
    let script = Script::new(vec![Err(broken), Ok(pb::GameSession::from(&ok))]);
    let got = script.run(increment).await.unwrap();
    assert_eq!(got.version, 2);
    // A CANCELLED the server itself sent (no source) is not retried.
    let script = Script::new(vec![Err(Status::cancelled("by the server"))]);
    let err = script.run(increment).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn other_errors_return_at_once() {
    for status in [
        Status::not_found("gone"),
        Status::invalid_argument("bad"),
        Status::permission_denied("no"),
    ] {
        let code = status.code();
        let script = Script::new(vec![Err(status)]);
        let started = Instant::now();
        let err = script.run(increment).await.unwrap_err();
        assert_eq!(err.code(), Some(code));
        assert_eq!(script.seen.lock().unwrap().len(), 1);
        assert_eq!(started.elapsed().as_millis(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_refusing_helper_ends_the_loop_without_sending() {
    let script = Script::new(vec![]);
    let refuse = |_: &mut Session| {
        Err(ClientError::Mutation(DomainError::precondition(
            "INSUFFICIENT_QUANTITY",
            "none held",
        )))
    };
    let err = script.run(refuse).await.unwrap_err();
    assert!(matches!(err, ClientError::Mutation(_)));
    assert!(script.seen.lock().unwrap().is_empty());
}

#[test]
fn the_policy_is_configurable() {
    let p = RetryPolicy {
        max_retries: 5,
        base: Duration::from_millis(10),
        factor: 3,
        max_delay: Duration::from_millis(200),
        jitter: 0.0,
    };
    let d: Vec<u128> = p.delays().map(|d| d.as_millis()).collect();
    assert_eq!(
        d,
        vec![9, 27, 81, 200, 200],
        "base/factor rounds down to a whole unit"
    );
    let default: Vec<u128> = RetryPolicy {
        jitter: 0.0,
        ..Default::default()
    }
    .delays()
    .map(|d| d.as_millis())
    .collect();
    assert_eq!(default, vec![100, 200, 400]);
}
