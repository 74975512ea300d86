//! The Rust client (cargo feature `client`): the generated stubs plus the retry
//! loop, idempotent request ids, and an optimistic session handle.
//!
//! The session helpers are `crate::domain::ops`: the same code the server runs in
//! MutateSession, applied here optimistically.

mod calls;
mod error;
mod optimistic;
mod retry;
mod stats;

use std::{sync::Arc, time::Duration};

use tonic::{Code, Request, Status, metadata::MetadataValue, transport::Channel};

pub use calls::{AdvanceOutcome, UpdateOutcome};
pub use error::ClientError;
pub use optimistic::{
    AtDeadline, Conflict, FileQueue, MemoryQueue, Merge, MergeHook, OptimisticBuilder, OptimisticOptions,
    OptimisticSession, QueueStore, QueuedMutation, SyncStatus,
};
pub use retry::RetryPolicy;
pub use stats::{ClientStats, METER_NAME, StatsSnapshot};

pub use crate::domain::ops::{self, NpcPatch, SessionOp};
use crate::{
    domain::Session,
    wire::{json_to_struct, pb, pb::session_service_client::SessionServiceClient},
};

/// How the client proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    /// The interim / development identity (`x-user-id`).
    UserId(i64),
    /// A JWT (`authorization: Bearer …`).
    Bearer(String),
}

/// A new id for one logical mutation (UUID v7: time-ordered, so server indexes stay tidy).
pub fn new_request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The caller's request id, or a new one: resends must carry the same id.
fn request_id_or_new(id: String) -> String {
    if id.is_empty() { new_request_id() } else { id }
}

/// SessionService with the conflict-retry loop. Cheap to clone.
#[derive(Clone)]
pub struct SessionClient {
    channel: Channel,
    stub: SessionServiceClient<Channel>,
    credentials: Credentials,
    /// Extra metadata sent with every call (e.g. `x-user-id` for a service acting for a user).
    extra: Vec<(&'static str, String)>,
    policy: RetryPolicy,
    stats: Arc<ClientStats>,
}

impl SessionClient {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`).
    pub async fn connect(url: impl Into<String>) -> Result<Self, ClientError> {
        let channel = Channel::from_shared(url.into())
            .map_err(|e| ClientError::Status(Status::invalid_argument(e.to_string())))?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        Ok(Self::new(channel))
    }

    /// A client over an existing channel (TLS, load balancing … configured by the caller).
    pub fn new(channel: Channel) -> Self {
        Self {
            stub: SessionServiceClient::new(channel.clone()),
            channel,
            credentials: Credentials::None,
            extra: Vec::new(),
            policy: RetryPolicy::default(),
            stats: Arc::default(),
        }
    }

    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Adds a metadata entry sent with every call.
    pub fn with_metadata(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((key, value.into()));
        self
    }

    /// Records the client's metrics (`session.client.*`) through `meter` instead of
    /// the global meter provider's. Counters start again from zero.
    pub fn with_meter(mut self, meter: &opentelemetry::metrics::Meter) -> Self {
        self.stats = Arc::new(ClientStats::with_meter(meter));
        self
    }

    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Conflicts, retries and exhaustions so far.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The channel, for other services on the same server (health, reflection).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The generated stub, for calls this type does not wrap.
    pub fn stub(&self) -> SessionServiceClient<Channel> {
        self.stub.clone()
    }

    /// A request with this client's credentials and metadata.
    pub fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        let md = req.metadata_mut();
        match &self.credentials {
            Credentials::None => {}
            Credentials::UserId(id) => {
                md.insert("x-user-id", MetadataValue::from(*id));
            }
            Credentials::Bearer(token) => {
                if let Ok(v) = format!("Bearer {token}").parse() {
                    md.insert("authorization", v);
                }
            }
        }
        for (k, v) in &self.extra {
            if let Ok(v) = v.parse() {
                md.insert(*k, v);
            }
        }
        if let Some(tp) = traceparent()
            && let Ok(v) = tp.parse()
        {
            md.insert("traceparent", v);
        }
        req
    }

    /// CreateSession (idempotent: resent with the same request id while unreachable).
    pub async fn create(&self, mut req: pb::CreateSessionRequest) -> Result<Session, ClientError> {
        req.request_id = request_id_or_new(req.request_id);
        self.session_call(|mut stub, r| async move { stub.create_session(r).await }, req)
            .await
    }

    /// GetSession, strong: never older than any write acknowledged to anyone.
    pub async fn get(&self, session_id: i64) -> Result<Session, ClientError> {
        self.read(session_id, None).await
    }

    /// GetSession at `min_version` or newer (the highest version this caller has seen):
    /// any replica may answer from its own copy, so it is cheaper than [`get`](Self::get),
    /// and it never goes back in time for this caller.
    pub async fn get_at_least(&self, session_id: i64, min_version: i64) -> Result<Session, ClientError> {
        self.read(session_id, Some(min_version)).await
    }

    async fn read(&self, session_id: i64, min_version: Option<i64>) -> Result<Session, ClientError> {
        let req = pb::GetSessionRequest {
            session_id,
            min_version,
        };
        self.session_call(|mut stub, r| async move { stub.get_session(r).await }, req)
            .await
    }

    /// Reads the session, applies `f` to a copy, and sends the changed fields with
    /// `expected_version`; on ABORTED re-applies `f` on the session from the details.
    pub async fn update_with_retry<F>(&self, session_id: i64, f: F) -> Result<Session, ClientError>
    where
        F: FnMut(&mut Session),
    {
        let base = self.get(session_id).await?;
        self.update_from(base, f).await
    }

    /// [`update_with_retry`](Self::update_with_retry) from a session already known
    /// (no initial read).
    pub async fn update_from<F>(&self, base: Session, mut f: F) -> Result<Session, ClientError>
    where
        F: FnMut(&mut Session),
    {
        self.try_update_from(base, new_request_id(), |s| {
            f(s);
            Ok(())
        })
        .await
    }

    /// Applies typed ops (the session helpers) through the retry loop.
    pub async fn apply_ops(&self, base: Session, ops: &[SessionOp]) -> Result<Session, ClientError> {
        self.try_update_from(base, new_request_id(), |s| apply_ops(s, ops))
            .await
    }

    /// [`update_from`](Self::update_from) with a request id of the caller's: retrying
    /// with the same id after any failure (even after a restart, if the id was kept)
    /// applies the change at most once.
    pub async fn update_idempotent<F>(
        &self,
        base: Session,
        request_id: String,
        mut f: F,
    ) -> Result<Session, ClientError>
    where
        F: FnMut(&mut Session),
    {
        self.try_update_from(base, request_id, |s| {
            f(s);
            Ok(())
        })
        .await
    }

    pub(crate) async fn try_update_from<F>(
        &self,
        base: Session,
        request_id: String,
        f: F,
    ) -> Result<Session, ClientError>
    where
        F: FnMut(&mut Session) -> Result<(), ClientError>,
    {
        let this = self.clone();
        let send = move |req: pb::UpdateSessionRequest| {
            let mut stub = this.stub.clone();
            let req = this.request(req);
            async move { stub.update_session(req).await.map(|r| r.into_inner()) }
        };
        retry::update_loop(&self.policy, &self.stats, base, request_id, f, send).await
    }

    /// MutateSession: the ops run on the server; without `expected_version` it never
    /// conflicts. Resent with the same request id while the server is unreachable.
    pub async fn mutate(
        &self,
        session_id: i64,
        ops: &[SessionOp],
        expected_version: Option<i64>,
    ) -> Result<Session, ClientError> {
        let req = pb::MutateSessionRequest {
            session_id,
            ops: ops.iter().map(pb::SessionOp::from).collect(),
            expected_version,
            request_id: new_request_id(),
        };
        self.session_call(|mut stub, r| async move { stub.mutate_session(r).await }, req)
            .await
    }

    /// WatchSession: the raw stream (see [`OptimisticSession`] for a managed one).
    pub async fn watch(
        &self,
        session_id: i64,
        since_version: i64,
    ) -> Result<tonic::Streaming<pb::GameSession>, ClientError> {
        let req = self.request(pb::WatchSessionRequest {
            session_id,
            since_version,
        });
        let mut stub = self.stub.clone();
        Ok(stub
            .watch_session(req)
            .await
            .map_err(ClientError::Status)?
            .into_inner())
    }

    /// [`resend`](Self::resend) of a call that answers with a session.
    async fn session_call<M, C, Fut>(&self, call: C, msg: M) -> Result<Session, ClientError>
    where
        M: Clone,
        C: Fn(SessionServiceClient<Channel>, Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<pb::GameSession>, Status>>,
    {
        Ok(Session::try_from(self.resend(call, msg).await?)?)
    }

    /// Sends `msg`, resending the identical message on UNAVAILABLE / DEADLINE_EXCEEDED
    /// per the retry policy.
    async fn resend<M, T, C, Fut>(&self, call: C, msg: M) -> Result<T, ClientError>
    where
        M: Clone,
        C: Fn(SessionServiceClient<Channel>, Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let once = || {
            let sent = call(self.stub.clone(), self.request(msg.clone()));
            let started = std::time::Instant::now();
            async move {
                let answer = sent.await.map(tonic::Response::into_inner);
                self.stats
                    .call(stats::method_of::<M>(), started.elapsed().as_secs_f64());
                answer
            }
        };
        retry::resend(&self.policy, &self.stats, once).await
    }
}

/// The W3C `traceparent` of the current tracing span, when it belongs to a trace
/// (a tracing-opentelemetry layer is installed), so the server's spans join it.
pub fn traceparent() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Applies ops in order to `s`; on error `s` is left unchanged.
pub(crate) fn apply_ops(s: &mut Session, ops: &[SessionOp]) -> Result<(), ClientError> {
    *s = crate::domain::ops::apply_all(s, ops)?;
    Ok(())
}

/// Builds a CreateSessionRequest from JSON flags (a convenience for tools and tests).
pub fn create_request(
    scene_id: i64,
    entry_node_id: i64,
    flags: &serde_json::Value,
) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        scene_id,
        entry_node_id,
        flags: flags.as_object().map(json_to_struct),
        ..Default::default()
    }
}

/// True for a NOT_FOUND answer.
pub fn is_not_found(e: &ClientError) -> bool {
    e.code() == Some(Code::NotFound)
}
