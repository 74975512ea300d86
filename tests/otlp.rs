//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans reach that OTLP/gRPC endpoint,
//! named by `OTEL_SERVICE_NAME`. Its own test binary: telemetry is process-global.

mod common;

use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use session_service::{
    config::{LogFormat, LogSettings},
    pb,
    telemetry::logging,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let _ = self.0.send(req.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_configured_otlp_endpoint() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    // SAFETY: this test binary has one test, and sets these before any thread reads them.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
        std::env::set_var("OTEL_SERVICE_NAME", "session-service-otlp-test");
    }
    let telemetry = logging::init(&LogSettings {
        format: LogFormat::Pretty,
        filter: "warn,session_service=info".into(),
    });

    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut c = app.client().await;
    c.create_session(as_user(
        1,
        pb::CreateSessionRequest {
            scene_id: 1,
            entry_node_id: 1,
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    app.finish().await;
    tokio::task::spawn_blocking(move || drop(telemetry))
        .await
        .unwrap(); // flushes the batch

    let mut names = Vec::new();
    let mut service = None;
    while let Ok(Some(batch)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        for rs in batch.resource_spans {
            for attr in rs.resource.iter().flat_map(|r| r.attributes.iter()) {
                if attr.key == "service.name" {
                    service = attr.value.as_ref().map(|v| format!("{:?}", v.value));
                }
            }
            for ss in rs.scope_spans {
                names.extend(ss.spans.into_iter().map(|s| s.name));
            }
        }
        if names
            .iter()
            .any(|n| n == "pixsim.session.v1.SessionService/CreateSession")
        {
            break;
        }
    }
    assert!(
        names
            .iter()
            .any(|n| n == "pixsim.session.v1.SessionService/CreateSession"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "create"),
        "the use-case span too: {names:?}"
    );
    assert!(service.unwrap_or_default().contains("session-service-otlp-test"));
}
