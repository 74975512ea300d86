//! `OptimisticSession`: instant local state, the server as the authority, rollback.
//!
//! What a caller sees is always "server truth + pending mutations, in order". Each
//! mutation is sent one at a time, in order, through the conflict-retry loop; while
//! the server is unreachable mutations wait in a bounded queue and are replayed when
//! it returns (each with its own request id, so a write whose answer was lost is
//! never applied twice).

use std::{
    collections::VecDeque,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

use super::{ClientError, SessionClient, SessionOp, apply_ops, is_not_found, new_request_id};
use crate::domain::Session;

/// Tunables of an [`OptimisticSession`].
#[derive(Debug, Clone)]
pub struct OptimisticOptions {
    /// Mutations that may wait at once (offline); beyond it `apply` fails with `QueueFull`.
    pub max_pending: usize,
    /// Keep the server truth current with WatchSession (other tabs' writes appear).
    pub watch: bool,
    /// How long to wait before trying an unreachable server again.
    pub reconnect_interval: Duration,
}

impl Default for OptimisticOptions {
    fn default() -> Self {
        Self {
            max_pending: 64,
            watch: true,
            reconnect_interval: Duration::from_millis(500),
        }
    }
}

struct Pending {
    id: u64,
    ops: Vec<SessionOp>,
    request_id: String,
    done: oneshot::Sender<Result<Session, ClientError>>,
}

struct State {
    confirmed: Session,
    /// (id, ops) of every mutation not yet confirmed, oldest first.
    pending: VecDeque<(u64, Vec<SessionOp>)>,
    next_id: u64,
}

impl State {
    /// Server truth with the pending mutations applied in order (those that no
    /// longer apply are skipped in the view; the server will refuse them).
    fn view(&self) -> Session {
        let mut view = self.confirmed.clone();
        for (_, ops) in &self.pending {
            let _ = apply_ops(&mut view, ops);
        }
        view
    }

    fn confirm(&mut self, server: Session) {
        if server.version >= self.confirmed.version {
            self.confirmed = server;
        }
    }
}

struct Shared {
    state: Mutex<State>,
    view: watch::Sender<Session>,
    client: SessionClient,
    options: OptimisticOptions,
}

impl Shared {
    fn publish(&self, state: &State) {
        self.view.send_replace(state.view());
    }

    fn confirmed(&self) -> Session {
        self.state.lock().expect("state lock").confirmed.clone()
    }

    /// Removes a settled mutation, takes the server's session if newer, publishes.
    fn settle(&self, id: u64, server: Option<Session>) {
        let mut state = self.state.lock().expect("state lock");
        state.pending.retain(|(p, _)| *p != id);
        if let Some(s) = server {
            state.confirm(s);
        }
        self.publish(&state);
    }
}

/// A handle on one session for interactive callers. Dropping it stops its tasks.
pub struct OptimisticSession {
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Pending>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for OptimisticSession {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl OptimisticSession {
    /// Reads the session and starts the handle.
    pub async fn open(
        client: SessionClient,
        session_id: i64,
        options: OptimisticOptions,
    ) -> Result<Self, ClientError> {
        let session = client.get(session_id).await?;
        Ok(Self::from_session(client, session, options))
    }

    /// Starts a handle from a session already read.
    pub fn from_session(client: SessionClient, session: Session, options: OptimisticOptions) -> Self {
        let (view, _) = watch::channel(session.clone());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                confirmed: session,
                pending: VecDeque::new(),
                next_id: 0,
            }),
            view,
            client,
            options,
        });
        let (queue, rx) = mpsc::unbounded_channel();
        let mut tasks = vec![tokio::spawn(send_in_order(shared.clone(), rx))];
        if shared.options.watch {
            tasks.push(tokio::spawn(follow(shared.clone())));
        }
        Self { shared, queue, tasks }
    }

    /// What the UI should show now.
    pub fn state(&self) -> Session {
        self.shared.view.borrow().clone()
    }

    /// Changes of [`state`](Self::state), as they happen.
    pub fn subscribe(&self) -> watch::Receiver<Session> {
        self.shared.view.subscribe()
    }

    /// The last state the server confirmed.
    pub fn confirmed(&self) -> Session {
        self.shared.confirmed()
    }

    /// Asks the server for news without waiting for the watch stream: a read at least
    /// at the confirmed version (any replica's own copy may answer, and the handle
    /// never goes back in time). Returns the confirmed state afterwards.
    pub async fn refresh(&self) -> Result<Session, ClientError> {
        let known = self.shared.confirmed();
        let server = self.shared.client.get_at_least(known.id, known.version).await?;
        let mut state = self.shared.state.lock().expect("state lock");
        state.confirm(server);
        self.shared.publish(&state);
        Ok(state.confirmed.clone())
    }

    /// The mutations not yet confirmed, oldest first.
    pub fn pending(&self) -> Vec<Vec<SessionOp>> {
        let state = self.shared.state.lock().expect("state lock");
        state.pending.iter().map(|(_, ops)| ops.clone()).collect()
    }

    /// Shows the mutation at once and queues it for the server. The returned future
    /// resolves with the server's session, or with the error after rolling back.
    /// Queueing happens in this call, so calls made in a row are sent in that order.
    pub fn apply(&self, ops: Vec<SessionOp>) -> impl Future<Output = Result<Session, ClientError>> + use<> {
        let queued = self.enqueue(ops);
        async move {
            match queued {
                Ok(rx) => rx.await.unwrap_or(Err(ClientError::Closed)),
                Err(e) => Err(e),
            }
        }
    }

    fn enqueue(
        &self,
        ops: Vec<SessionOp>,
    ) -> Result<oneshot::Receiver<Result<Session, ClientError>>, ClientError> {
        let mut state = self.shared.state.lock().expect("state lock");
        if state.pending.len() >= self.shared.options.max_pending {
            return Err(ClientError::QueueFull);
        }
        // A mutation that cannot apply even locally is refused before it is shown.
        let mut preview = state.view();
        apply_ops(&mut preview, &ops)?;
        let id = state.next_id;
        state.next_id += 1;
        state.pending.push_back((id, ops.clone()));
        self.shared.view.send_replace(preview);
        let (done, rx) = oneshot::channel();
        let pending = Pending {
            id,
            ops,
            request_id: new_request_id(),
            done,
        };
        if self.queue.send(pending).is_err() {
            state.pending.retain(|(p, _)| *p != id);
            self.shared.publish(&state);
            return Err(ClientError::Closed);
        }
        Ok(rx)
    }
}

/// The sender: one mutation at a time, in order; waits out outages.
async fn send_in_order(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Pending>) {
    while let Some(p) = rx.recv().await {
        let result = loop {
            let base = shared.confirmed();
            let ops = &p.ops;
            let sent = shared
                .client
                .try_update_from(base, p.request_id.clone(), |s| apply_ops(s, ops))
                .await;
            match sent {
                Err(e) if e.is_transient() => {
                    tracing::debug!(error = %e, "server unreachable; mutation stays pending");
                    tokio::time::sleep(shared.options.reconnect_interval).await;
                }
                other => break other,
            }
        };
        match &result {
            Ok(session) => shared.settle(p.id, Some(session.clone())),
            Err(ClientError::Exhausted { last, .. }) => shared.settle(p.id, last.as_deref().cloned()),
            Err(_) => shared.settle(p.id, None),
        }
        let _ = p.done.send(result);
    }
}

/// Keeps the server truth current from WatchSession, reconnecting after failures.
async fn follow(shared: Arc<Shared>) {
    loop {
        let (id, since) = {
            let s = shared.confirmed();
            (s.id, s.version)
        };
        match shared.client.watch(id, since).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    let Ok(g) = item else { break };
                    let Ok(session) = Session::try_from(g) else {
                        continue;
                    };
                    let mut state = shared.state.lock().expect("state lock");
                    if session.version > state.confirmed.version {
                        state.confirm(session);
                        shared.publish(&state);
                    }
                }
            }
            Err(e) if is_not_found(&e) => return,
            Err(_) => {}
        }
        tokio::time::sleep(shared.options.reconnect_interval).await;
    }
}
