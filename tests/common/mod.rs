//! The test harness: a real server in-process on port 0 with a fresh database
//! (a unique SQLite file, or a uniquely named PostgreSQL database), talked to
//! through the generated tonic client.
#![allow(dead_code)]

pub mod db;
pub mod dropper;
pub mod metrics;
pub mod pgcluster;
pub mod pki;
pub mod proxy;
pub mod redis;
pub mod report;
pub mod skip;
pub mod topologies;

use std::{net::SocketAddr, time::Duration};

use session_service::{
    app::Application,
    config::Settings,
    pb::{self, session_service_client::SessionServiceClient},
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{Request, transport::Channel};

pub use db::{Backend, TestDb};

/// Runs a test body once per backend: SQLite always, PostgreSQL when
/// `TEST_DATABASE_URL` is set (CI sets it, and then a down server fails the test).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident => $body:ident;)+) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$body($crate::common::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if $crate::common::Backend::postgres_available() {
                        super::$body($crate::common::Backend::Postgres).await;
                    }
                }
            )+
        }
    };
}

/// A running server with its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub health_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub db: TestDb,
    pub settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Polls `check` every 20 ms until it yields a value, for at most `within`, and
/// returns it; panics naming `what` if it never does. How a test waits for
/// something it can observe, instead of sleeping a fixed time and hoping.
pub async fn eventually<T, Fut>(what: &str, within: Duration, mut check: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The store's settings for `url`, every other one at the configuration's default.
pub fn store_settings(url: &str) -> session_service::store::StoreSettings {
    let mut s = Settings::default();
    s.database.url = url.to_owned();
    session_service::app::store_settings(&s)
}

/// Settings for a test server on `db`: loopback, port 0, small timeouts.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut s = Settings::default();
    s.server.listen = ([127, 0, 0, 1], 0).into();
    s.server.shutdown_grace_secs = 5;
    s.database.url = db.url.clone();
    s.database.max_connections = 8;
    s.database.health_probe_interval_ms = 200;
    s.log.filter = "warn".into();
    s
}

impl TestApp {
    /// A server on a fresh database of `backend` with default test settings.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// A server on a fresh database, settings adjusted by `tweak`.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> Self {
        let db = TestDb::create(backend).await;
        let mut settings = test_settings(&db);
        tweak(&mut settings);
        Self::start(db, settings).await
    }

    /// A server on a database made elsewhere, settings adjusted by `tweak`.
    pub async fn spawn_on(db: TestDb, tweak: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = test_settings(&db);
        tweak(&mut settings);
        Self::start(db, settings).await
    }

    /// A server on an existing database (a second replica, or a restart).
    pub async fn start(db: TestDb, settings: Settings) -> Self {
        let app = Application::build(settings.clone())
            .await
            .expect("application builds");
        let addr = app.local_addr();
        let health_addr = app.health_addr();
        let metrics_addr = app.metrics_addr();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run_until(async {
                let _ = rx.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            addr,
            health_addr,
            metrics_addr,
            db,
            settings,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connects")
    }

    pub async fn client(&self) -> SessionServiceClient<Channel> {
        SessionServiceClient::new(self.channel().await)
    }

    /// Stops the server gracefully and waits for it; keeps the database.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// Stops the server and drops its database.
    pub async fn finish(mut self) {
        self.stop().await;
        self.db.drop_now().await;
    }
}

/// A request carrying the interim `x-user-id` identity.
pub fn as_user<T>(user: i64, msg: T) -> Request<T> {
    as_user_header(&user.to_string(), msg)
}

/// A request with `x-user-id` set to exactly `value`.
pub fn as_user_header<T>(value: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("x-user-id", value.parse().unwrap());
    req
}

/// A request from an admin (`x-scopes: sessions:admin`, honoured in `none` mode).
pub fn as_admin<T>(user: i64, msg: T) -> Request<T> {
    let mut req = as_user(user, msg);
    req.metadata_mut()
        .insert("x-scopes", "sessions:admin".parse().unwrap());
    req
}

/// A JSON object literal as a protobuf Struct.
pub fn obj(v: serde_json::Value) -> prost_types::Struct {
    session_service::wire::json_to_struct(v.as_object().expect("an object"))
}

/// A protobuf Struct as JSON.
pub fn json(s: &Option<prost_types::Struct>) -> serde_json::Value {
    let map = session_service::wire::struct_to_json(s.clone().unwrap_or_default(), "test").unwrap();
    serde_json::Value::Object(map)
}

/// MutateSession without an expected version: one more step of quest "q".
pub fn increment(session_id: i64, request_id: &str) -> pb::MutateSessionRequest {
    use pb::session_op::Op;
    pb::MutateSessionRequest {
        session_id,
        ops: vec![pb::SessionOp {
            op: Some(Op::IncrementQuestSteps(pb::IncrementQuestStepsOp {
                quest_id: "q".into(),
                n: 1,
            })),
        }],
        expected_version: None,
        request_id: request_id.into(),
    }
}

/// The steps of quest "q" (see [`increment`]).
pub fn steps(s: &pb::GameSession) -> i64 {
    json(&s.flags)["quests"]["q"]["stepsCompleted"]
        .as_i64()
        .expect("quest q has steps")
}

/// Creates a session for `user` with `flags`.
pub async fn create(
    client: &mut SessionServiceClient<Channel>,
    user: i64,
    flags: serde_json::Value,
) -> pb::GameSession {
    let req = pb::CreateSessionRequest {
        scene_id: 1,
        entry_node_id: 10,
        flags: Some(obj(flags)),
        ..Default::default()
    };
    client
        .create_session(as_user(user, req))
        .await
        .expect("create")
        .into_inner()
}

/// The field named by the BadRequest detail of an error.
pub fn violated_field(status: &tonic::Status) -> String {
    use prost::Message;
    let rpc = session_service::wire::status::rpc_status(status).expect("details");
    let any = rpc
        .details
        .iter()
        .find(|a| a.type_url == "type.googleapis.com/google.rpc.BadRequest")
        .expect("a BadRequest detail");
    tonic_types::pb::BadRequest::decode(any.value.as_slice())
        .unwrap()
        .field_violations[0]
        .field
        .clone()
}
