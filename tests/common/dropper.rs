//! A fault-injecting gRPC proxy: forwards every call to the real server and, for a
//! fraction of calls, throws the server's answer away after it was computed and
//! answers UNAVAILABLE instead — the "commit happened, response lost" hazard.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use futures::Stream;
use session_service::pb::{
    self,
    session_service_client::SessionServiceClient,
    session_service_server::{SessionService, SessionServiceServer},
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, transport::Channel};

/// Which responses to drop.
#[derive(Clone, Debug)]
pub enum Drop {
    /// Every n-th (deterministic: never two in a row).
    Every(u64),
    /// Each with this probability, from a seeded generator (repeatable).
    Random { percent: u64, seed: u64 },
    /// As `Random`, with a percentage the test changes while it runs.
    Switchable { percent: Arc<AtomicU64>, seed: u64 },
}

/// Forwards calls and drops some answers.
#[derive(Clone)]
pub struct Dropper {
    upstream: SessionServiceClient<Channel>,
    mode: Drop,
    pub calls: Arc<AtomicU64>,
    pub dropped: Arc<AtomicU64>,
}

/// The same request (message and metadata) for the upstream call.
fn forward<T>(req: Request<T>) -> Request<T> {
    let (metadata, _, message) = req.into_parts();
    Request::from_parts(metadata, Default::default(), message)
}

impl Dropper {
    /// Starts the proxy in front of `upstream`; returns its address and counters.
    pub async fn start(upstream: Channel, every: u64) -> (SocketAddr, Self) {
        Self::start_with(upstream, Drop::Every(every)).await
    }

    pub async fn start_with(upstream: Channel, mode: Drop) -> (SocketAddr, Self) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let this = Self {
            upstream: SessionServiceClient::new(upstream),
            mode,
            calls: Arc::default(),
            dropped: Arc::default(),
        };
        let svc = SessionServiceServer::new(this.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (addr, this)
    }

    fn drop_this_one(&self) -> bool {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        // splitmix64 of (seed, call number): repeatable without shared state.
        let roll = |seed: u64| {
            let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % 100
        };
        let drop = match &self.mode {
            Drop::Every(every) => n.is_multiple_of(*every),
            Drop::Random { percent, seed } => roll(*seed) < *percent,
            Drop::Switchable { percent, seed } => roll(*seed) < percent.load(Ordering::Relaxed),
        };
        if drop {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
        drop
    }

    fn answer<T>(&self, r: Result<Response<T>, Status>) -> Result<Response<T>, Status> {
        let r = r.map_err(upstream_failure)?;
        if self.drop_this_one() {
            return Err(Status::unavailable("response lost (injected)"));
        }
        Ok(r)
    }
}

/// The upstream could not be reached or its connection broke (a status with a
/// transport error as source, which does not survive the hop to the client): the
/// proxy answers UNAVAILABLE, as a real proxy would.
fn upstream_failure(status: Status) -> Status {
    use std::error::Error;
    match status.source() {
        Some(_) => Status::unavailable(format!("upstream: {}", status.message())),
        None => status,
    }
}

type Watch = Pin<Box<dyn Stream<Item = Result<pb::GameSession, Status>> + Send>>;

#[tonic::async_trait]
impl SessionService for Dropper {
    async fn create_session(
        &self,
        r: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::GameSession>, Status> {
        let up = self.upstream.clone().create_session(forward(r)).await;
        self.answer(up)
    }
    async fn get_session(
        &self,
        r: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GameSession>, Status> {
        let up = self.upstream.clone().get_session(forward(r)).await;
        self.answer(up)
    }
    async fn list_sessions(
        &self,
        r: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        self.upstream.clone().list_sessions(forward(r)).await
    }
    async fn update_session(
        &self,
        r: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::GameSession>, Status> {
        let up = self.upstream.clone().update_session(forward(r)).await;
        self.answer(up)
    }
    async fn advance_session(
        &self,
        r: Request<pb::AdvanceSessionRequest>,
    ) -> Result<Response<pb::GameSession>, Status> {
        let up = self.upstream.clone().advance_session(forward(r)).await;
        self.answer(up)
    }
    async fn delete_session(&self, r: Request<pb::DeleteSessionRequest>) -> Result<Response<()>, Status> {
        let up = self.upstream.clone().delete_session(forward(r)).await;
        self.answer(up)
    }
    async fn list_session_events(
        &self,
        r: Request<pb::ListSessionEventsRequest>,
    ) -> Result<Response<pb::ListSessionEventsResponse>, Status> {
        self.upstream.clone().list_session_events(forward(r)).await
    }
    async fn mutate_session(
        &self,
        r: Request<pb::MutateSessionRequest>,
    ) -> Result<Response<pb::GameSession>, Status> {
        let up = self.upstream.clone().mutate_session(forward(r)).await;
        self.answer(up)
    }
    type WatchSessionStream = Watch;
    async fn watch_session(&self, r: Request<pb::WatchSessionRequest>) -> Result<Response<Watch>, Status> {
        let up = self
            .upstream
            .clone()
            .watch_session(forward(r))
            .await
            .map_err(upstream_failure)?;
        Ok(Response::new(Box::pin(up.into_inner())))
    }
    async fn put_world_rules(
        &self,
        r: Request<pb::PutWorldRulesRequest>,
    ) -> Result<Response<pb::WorldRules>, Status> {
        self.upstream.clone().put_world_rules(forward(r)).await
    }
    async fn get_world_rules(
        &self,
        r: Request<pb::GetWorldRulesRequest>,
    ) -> Result<Response<pb::WorldRules>, Status> {
        self.upstream.clone().get_world_rules(forward(r)).await
    }
}
