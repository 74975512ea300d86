//! The server around the service: health, reflection, graceful stop, refusal to
//! expose unverified identity, and UNAVAILABLE when the database goes away.

mod common;

use std::time::Duration;

use common::{proxy::Proxy, *};
use serde_json::json;
use session_service::{app::Application, pb};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

async fn health(app: &TestApp, service: &str) -> ServingStatus {
    health_at(app.addr, service).await
}

async fn health_at(addr: std::net::SocketAddr, service: &str) -> ServingStatus {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = HealthClient::new(channel);
    let r = h
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(r.status).unwrap()
}

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_service() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    assert_eq!(health(&app, "").await, ServingStatus::Serving);
    assert_eq!(
        health(&app, "pixsim.session.v1.SessionService").await,
        ServingStatus::Serving
    );
    app.finish().await;
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services() {
    use tonic_reflection::pb::{v1, v1alpha};
    let app = TestApp::spawn(Backend::Sqlite).await;
    let want = ["grpc.health.v1.Health", "pixsim.session.v1.SessionService"];

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        stream.next().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list")
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for w in want {
        assert!(names.contains(&w), "v1 lists {names:?}");
    }

    let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel().await);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "google.rpc.ErrorInfo".into(),
            ),
        ),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap().message_response.unwrap();
    assert!(
        matches!(
            resp,
            v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_)
        ),
        "ErrorInfo is described, so grpcurl can render error details"
    );
    app.finish().await;
}

#[tokio::test]
async fn a_stop_ends_watch_streams_and_closes_the_server() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let mut watch = c
        .watch_session(as_user(
            1,
            pb::WatchSessionRequest {
                session_id: s.id,
                since_version: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(watch.next().await.unwrap().unwrap().version, 1);
    app.stop().await;
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("stream ends");
    match end {
        Some(Err(status)) => assert_eq!(status.code(), Code::Unavailable),
        None => {}
        Some(Ok(s)) => panic!("unexpected session {s:?}"),
    }
    let after = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await;
    assert!(after.is_err(), "the server no longer answers");
    app.db.drop_now().await;
}

#[tokio::test]
async fn unverified_identity_is_refused_on_a_non_loopback_address() {
    let db = TestDb::create(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.server.listen = ([0, 0, 0, 0], 0).into();
    let err = Application::build(settings.clone()).await.err().expect("refused");
    assert!(err.to_string().contains("--insecure-allow-no-auth"), "{err}");
    settings.server.insecure_allow_no_auth = true;
    let app = Application::build(settings)
        .await
        .expect("allowed with the explicit flag");
    assert!(!app.local_addr().ip().is_loopback());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_database_means_unavailable_and_not_serving_until_it_returns() {
    if !Backend::postgres_available() {
        return;
    }
    let db = TestDb::create(Backend::Postgres).await;
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = Proxy::start(pg).await;
    let mut settings = test_settings(&db);
    settings.database.url = db.url.replace("127.0.0.1:5432", &proxy.addr.to_string());
    settings.database.acquire_timeout_ms = 500;
    settings.server.health_listen = Some(([127, 0, 0, 1], 0).into());
    assert_ne!(
        settings.database.url, db.url,
        "the test database goes through the proxy"
    );
    let app = TestApp::start(db, settings).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;

    proxy.cut();
    let started = std::time::Instant::now();
    let err = c
        .update_session(as_user(
            1,
            pb::UpdateSessionRequest {
                session_id: s.id,
                world_time: Some(5.0),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "fails fast: {:?}",
        started.elapsed()
    );
    let mut status = ServingStatus::Serving;
    for _ in 0..50 {
        status = health(&app, "pixsim.session.v1.SessionService").await;
        if status == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, ServingStatus::NotServing);
    // The probe port: not ready, but alive (no restarts during a database outage).
    let probes = app.health_addr.expect("probe port");
    assert_eq!(
        health_at(probes, "pixsim.session.v1.SessionService").await,
        ServingStatus::NotServing
    );
    assert_eq!(health_at(probes, "").await, ServingStatus::Serving);

    proxy.restore();
    let mut recovered = false;
    for _ in 0..50 {
        let req = pb::UpdateSessionRequest {
            session_id: s.id,
            world_time: Some(5.0),
            ..Default::default()
        };
        if c.update_session(as_user(1, req)).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "writes work again");
    for _ in 0..50 {
        if health(&app, "").await == ServingStatus::Serving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health(&app, "").await, ServingStatus::Serving);
    app.finish().await;
}
