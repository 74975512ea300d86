//! `OptimisticSession`: instant local state, the server as the authority, rollback.
//!
//! What a caller sees is always "server truth + pending mutations, in order", with
//! relationship tiers computed locally by the world's rules (the same
//! `normalize_relationships` the server runs), so an edit shows its tier before the
//! server answers. Each mutation is sent one at a time, in order, through the
//! conflict-retry loop. While the server is unreachable the handle says so
//! ([`SyncStatus::Offline`]), mutations wait in a bounded queue that a
//! [`QueueStore`] can keep across restarts, and each is replayed with its own
//! request id, so a write whose answer was lost is never applied twice. A mutation
//! the server will not take as it is goes to the merge hook, if one is set.

mod merge;
mod queue;
mod sender;

use std::{
    collections::VecDeque,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

pub use merge::{Conflict, Merge, MergeHook};
pub use queue::{FileQueue, MemoryQueue, QueueStore, QueuedMutation};

use super::{ClientError, SessionClient, SessionOp, apply_ops, is_not_found, new_request_id};
use crate::domain::{Session, WorldRules, normalize_relationships};

/// Tunables of an [`OptimisticSession`].
#[derive(Debug, Clone)]
pub struct OptimisticOptions {
    /// Mutations that may wait at once (offline); beyond it `apply` fails with `QueueFull`.
    pub max_pending: usize,
    /// Keep the server truth current with WatchSession (other tabs' writes appear).
    pub watch: bool,
    /// How long to wait before trying an unreachable server again.
    pub reconnect_interval: Duration,
    /// How long an `apply` future waits for the server before it resolves with
    /// [`ClientError::Deadline`]; `None` waits as long as it takes.
    pub deadline: Option<Duration>,
    /// What a mutation whose deadline passed becomes.
    pub at_deadline: AtDeadline,
    /// How often the world's rules are read again (local tiers follow rule changes).
    pub rules_refresh: Duration,
}

impl Default for OptimisticOptions {
    fn default() -> Self {
        Self {
            max_pending: 64,
            watch: true,
            reconnect_interval: Duration::from_millis(500),
            deadline: None,
            at_deadline: AtDeadline::Keep,
            rules_refresh: Duration::from_secs(60),
        }
    }
}

/// What happens to a mutation when its `apply` future gives up waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AtDeadline {
    /// It stays queued (and shown) and is sent when the server is back.
    #[default]
    Keep,
    /// It is taken out of the queue and rolled back (if it was not already sent).
    Drop,
}

/// Whether the handle's edits are reaching the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStatus {
    /// Nothing waiting.
    Online,
    /// Mutations are on their way to a reachable server.
    Syncing,
    /// The server has been unreachable since `since`; `pending` mutations wait.
    Offline { since: SystemTime, pending: usize },
}

/// A queued mutation, as the state knows it.
struct Entry {
    id: u64,
    ops: Vec<SessionOp>,
    request_id: String,
}

/// A mutation on its way to the sender task.
struct Pending {
    id: u64,
    ops: Vec<SessionOp>,
    request_id: String,
    /// `None` for a mutation replayed from the store (its caller is gone).
    done: Option<oneshot::Sender<Result<Session, ClientError>>>,
}

struct State {
    confirmed: Session,
    /// Every mutation not yet confirmed, oldest first.
    pending: VecDeque<Entry>,
    next_id: u64,
    rules: Arc<WorldRules>,
    offline_since: Option<SystemTime>,
    /// The ids of the queue as last saved: a publish that did not change the queue
    /// (a watch notice, a status change) writes nothing to the store.
    saved: Vec<u64>,
}

impl State {
    /// Server truth with the pending mutations applied in order (those that no
    /// longer apply are skipped in the view; the server will refuse them), and the
    /// relationships normalized by the world's rules, as the server will.
    fn view(&self) -> Session {
        let mut view = self.confirmed.clone();
        for entry in &self.pending {
            let _ = apply_ops(&mut view, &entry.ops);
        }
        let _ = normalize_relationships(&mut view.relationships, &self.rules);
        view
    }

    fn status(&self) -> SyncStatus {
        match (self.offline_since, self.pending.len()) {
            (Some(since), pending) => SyncStatus::Offline { since, pending },
            (None, 0) => SyncStatus::Online,
            (None, _) => SyncStatus::Syncing,
        }
    }

    fn confirm(&mut self, server: Session) {
        if server.version >= self.confirmed.version {
            self.confirmed = server;
        }
    }

    fn queued(&self) -> Vec<QueuedMutation> {
        let session_id = self.confirmed.id;
        let queued = self.pending.iter().map(|e| QueuedMutation {
            session_id,
            request_id: e.request_id.clone(),
            ops: e.ops.clone(),
        });
        queued.collect()
    }
}

struct Shared {
    state: Mutex<State>,
    view: watch::Sender<Session>,
    status: watch::Sender<SyncStatus>,
    client: SessionClient,
    options: OptimisticOptions,
    store: Arc<dyn QueueStore>,
    merge: Option<MergeHook>,
}

impl Shared {
    /// Tells subscribers, and the store if the queue changed, what the state is now.
    fn publish(&self, state: &mut State) {
        let (view, status) = (state.view(), state.status());
        // Subscribers hear of changes only.
        self.view
            .send_if_modified(|shown| replace_if_changed(shown, view));
        self.status
            .send_if_modified(|shown| replace_if_changed(shown, status));
        let ids: Vec<u64> = state.pending.iter().map(|e| e.id).collect();
        if ids == state.saved {
            return;
        }
        match self.store.save(&state.queued()) {
            Ok(()) => state.saved = ids,
            Err(error) => tracing::warn!(%error, "could not save the queued mutations"),
        }
    }

    fn confirmed(&self) -> Session {
        self.state.lock().expect("state lock").confirmed.clone()
    }

    fn is_pending(&self, id: u64) -> bool {
        let state = self.state.lock().expect("state lock");
        state.pending.iter().any(|e| e.id == id)
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().expect("state lock");
        change(&mut state);
        self.publish(&mut state);
    }

    /// Removes a mutation (settled, or dropped at its deadline); takes the server's
    /// session if it is newer.
    fn settle(&self, id: u64, server: Option<Session>) {
        self.update(|state| {
            let before = state.pending.len();
            state.pending.retain(|e| e.id != id);
            if state.pending.len() < before {
                self.client.stats.queued(-1);
            }
            if let Some(s) = server {
                state.confirm(s);
            }
        });
    }

    fn reached(&self, online: bool) {
        self.update(|state| {
            state.offline_since = match (online, state.offline_since) {
                (true, _) => None,
                (false, since) => Some(since.unwrap_or_else(SystemTime::now)),
            }
        });
    }
}

fn replace_if_changed<T: PartialEq>(shown: &mut T, new: T) -> bool {
    let changed = *shown != new;
    if changed {
        *shown = new;
    }
    changed
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

/// Sets up an [`OptimisticSession`]: options, a queue store, a merge hook.
pub struct OptimisticBuilder {
    client: SessionClient,
    options: OptimisticOptions,
    store: Arc<dyn QueueStore>,
    merge: Option<MergeHook>,
}

impl OptimisticBuilder {
    pub fn options(mut self, options: OptimisticOptions) -> Self {
        self.options = options;
        self
    }

    /// Where queued mutations are kept ([`MemoryQueue`] by default; a [`FileQueue`]
    /// survives a restart: mutations of this session found there are replayed).
    pub fn queue_store(mut self, store: impl QueueStore + 'static) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// Decides what to do with a mutation the server will not take as it is.
    pub fn merge(mut self, hook: impl Fn(&Conflict) -> Merge + Send + Sync + 'static) -> Self {
        self.merge = Some(Arc::new(hook));
        self
    }

    /// Reads the session and its world's rules, then starts.
    pub async fn open(self, session_id: i64) -> Result<OptimisticSession, ClientError> {
        let session = self.client.get(session_id).await?;
        let rules = match session.world_id {
            Some(world) => WorldRules::try_from(self.client.world_rules(world).await?)?,
            None => WorldRules::defaults(0),
        };
        self.start_with(session, rules)
    }

    /// Starts from a session already read (its world's rules are read in the
    /// background; until then the defaults apply).
    pub fn start(self, session: Session) -> Result<OptimisticSession, ClientError> {
        let rules = WorldRules::defaults(session.world_id.unwrap_or(0));
        self.start_with(session, rules)
    }

    fn start_with(self, session: Session, rules: WorldRules) -> Result<OptimisticSession, ClientError> {
        let stored = self.store.load().map_err(ClientError::Store)?;
        let replay: Vec<QueuedMutation> = stored
            .into_iter()
            .filter(|q| q.session_id == session.id)
            .collect();
        let state = State {
            pending: VecDeque::new(),
            next_id: 0,
            rules: Arc::new(rules),
            offline_since: None,
            saved: Vec::new(),
            confirmed: session,
        };
        let shared = Arc::new(Shared {
            view: watch::channel(state.view()).0,
            status: watch::channel(state.status()).0,
            state: Mutex::new(state),
            client: self.client,
            options: self.options,
            store: self.store,
            merge: self.merge,
        });
        let (queue, rx) = mpsc::unbounded_channel();
        let mut tasks = vec![tokio::spawn(sender::send_in_order(shared.clone(), rx))];
        if shared.options.watch {
            tasks.push(tokio::spawn(follow(shared.clone())));
        }
        tasks.push(tokio::spawn(keep_rules(shared.clone())));
        let handle = OptimisticSession { shared, queue, tasks };
        for q in replay {
            handle.enqueue(q.ops, q.request_id, false)?;
        }
        Ok(handle)
    }
}

impl OptimisticSession {
    /// A handle to set up: queue store, merge hook, options.
    pub fn builder(client: SessionClient) -> OptimisticBuilder {
        OptimisticBuilder {
            client,
            options: OptimisticOptions::default(),
            store: Arc::new(MemoryQueue::default()),
            merge: None,
        }
    }

    /// Reads the session (and its world's rules) and starts the handle.
    pub async fn open(
        client: SessionClient,
        session_id: i64,
        options: OptimisticOptions,
    ) -> Result<Self, ClientError> {
        Self::builder(client).options(options).open(session_id).await
    }

    /// Starts a handle from a session already read (in-memory queue, no merge hook).
    pub fn from_session(client: SessionClient, session: Session, options: OptimisticOptions) -> Self {
        Self::builder(client)
            .options(options)
            .start(session)
            .expect("an empty in-memory queue always loads")
    }

    /// What the UI should show now.
    pub fn state(&self) -> Session {
        self.shared.view.borrow().clone()
    }

    /// Changes of [`state`](Self::state), as they happen.
    pub fn subscribe(&self) -> watch::Receiver<Session> {
        self.shared.view.subscribe()
    }

    /// Whether edits are reaching the server.
    pub fn status(&self) -> SyncStatus {
        self.shared.status.borrow().clone()
    }

    /// Changes of [`status`](Self::status), as they happen.
    pub fn subscribe_status(&self) -> watch::Receiver<SyncStatus> {
        self.shared.status.subscribe()
    }

    /// The world rules the local view is normalized with.
    pub fn rules(&self) -> Arc<WorldRules> {
        self.shared.state.lock().expect("state lock").rules.clone()
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
        self.shared.update(|state| state.confirm(server));
        Ok(self.shared.confirmed())
    }

    /// The mutations not yet confirmed, oldest first.
    pub fn pending(&self) -> Vec<Vec<SessionOp>> {
        let state = self.shared.state.lock().expect("state lock");
        state.pending.iter().map(|e| e.ops.clone()).collect()
    }

    /// Shows the mutation at once and queues it for the server. The returned future
    /// resolves with the server's session, or with the error after rolling back, or
    /// at the deadline (if one is set) with [`ClientError::Deadline`]. Queueing
    /// happens in this call, so calls made in a row are sent in that order.
    pub fn apply(&self, ops: Vec<SessionOp>) -> impl Future<Output = Result<Session, ClientError>> + use<> {
        let queued = self
            .enqueue(ops, new_request_id(), true)
            .map(|(id, rx)| (id, rx.expect("a caller")));
        let shared = self.shared.clone();
        async move {
            let (id, rx) = queued?;
            let Some(deadline) = shared.options.deadline else {
                return rx.await.unwrap_or(Err(ClientError::Closed));
            };
            match tokio::time::timeout(deadline, rx).await {
                Ok(answer) => answer.unwrap_or(Err(ClientError::Closed)),
                Err(_) => {
                    let kept = shared.options.at_deadline == AtDeadline::Keep;
                    if !kept {
                        shared.settle(id, None);
                        shared.client.stats.rolled_back();
                    }
                    Err(ClientError::Deadline { kept })
                }
            }
        }
    }

    /// Adds a mutation to the queue and the view; with `caller`, a receiver for its outcome.
    #[allow(clippy::type_complexity)]
    fn enqueue(
        &self,
        ops: Vec<SessionOp>,
        request_id: String,
        caller: bool,
    ) -> Result<(u64, Option<oneshot::Receiver<Result<Session, ClientError>>>), ClientError> {
        let mut state = self.shared.state.lock().expect("state lock");
        if state.pending.len() >= self.shared.options.max_pending {
            return Err(ClientError::QueueFull);
        }
        // A new mutation that cannot apply even locally is refused before it is shown.
        if caller {
            apply_ops(&mut state.view(), &ops)?;
        }
        let id = state.next_id;
        state.next_id += 1;
        let entry = Entry {
            id,
            ops: ops.clone(),
            request_id: request_id.clone(),
        };
        state.pending.push_back(entry);
        self.shared.client.stats.queued(1);
        let (done, rx) = if caller {
            let (done, rx) = oneshot::channel();
            (Some(done), Some(rx))
        } else {
            (None, None)
        };
        let pending = Pending {
            id,
            ops,
            request_id,
            done,
        };
        if self.queue.send(pending).is_err() {
            state.pending.retain(|e| e.id != id);
            self.shared.client.stats.queued(-1);
            self.shared.publish(&mut state);
            return Err(ClientError::Closed);
        }
        self.shared.publish(&mut state);
        Ok((id, rx))
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
                    shared.update(|state| state.confirm(session));
                }
            }
            Err(e) if is_not_found(&e) => return,
            Err(_) => {}
        }
        tokio::time::sleep(shared.options.reconnect_interval).await;
    }
}

/// Reads the world's rules now and every `rules_refresh`, so local tiers follow the
/// rules the server normalizes with. Sessions of no world use the defaults.
async fn keep_rules(shared: Arc<Shared>) {
    let Some(world) = shared.confirmed().world_id else {
        return;
    };
    loop {
        let fetched = shared.client.world_rules(world).await;
        if let Ok(rules) = fetched
            .map_err(|_| ())
            .and_then(|r| WorldRules::try_from(r).map_err(|_| ()))
        {
            let changed = shared.state.lock().expect("state lock").rules.version != rules.version;
            if changed {
                shared.update(|state| state.rules = Arc::new(rules));
            }
        }
        tokio::time::sleep(shared.options.rules_refresh).await;
    }
}
