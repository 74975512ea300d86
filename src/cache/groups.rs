//! What the write-through and lookup queues share: each sends what is queued as one
//! group when the previous group is answered (never waiting for company), and a group
//! that Redis is slow to answer finishes on its own so the groups behind it go on.
//!
//! "What is queued" includes what tasks already runnable are about to queue: the
//! first item wakes the queue's task, and tokio runs a task woken from a worker
//! next, ahead of the tasks already in its run queue. One statement answers ~8
//! writers at once; without a yield the first of them went to Redis alone and the
//! rest in a second call (BENCHMARKS.md, round ten).

use std::{future::Future, time::Duration};

use tokio::sync::mpsc;

/// The first item queued and every one queued behind it, up to `max`; `None` once
/// the queue is closed.
pub(super) async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, max: usize) -> Option<Vec<T>> {
    let mut group = vec![rx.recv().await?];
    // One pass of the scheduler, no timer: the tasks it runs first may queue theirs.
    tokio::task::yield_now().await;
    while group.len() < max {
        match rx.try_recv() {
            Ok(next) => group.push(next),
            Err(_) => break,
        }
    }
    Some(group)
}

/// Waits up to `limit` for `sent`, then lets it finish in a task of its own (a
/// healthy round trip is far shorter than the limit).
pub(super) async fn in_line_for(limit: Duration, sent: impl Future<Output = ()> + Send + 'static) {
    let mut sent = Box::pin(sent);
    tokio::select! {
        () = &mut sent => {}
        () = tokio::time::sleep(limit) => {
            tokio::spawn(sent);
        }
    }
}
