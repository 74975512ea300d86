//! gRPC-Web on the main port, as a browser speaks it: HTTP/1.1 POSTs of
//! `application/grpc-web+proto`, trailers in the body, CORS from an allow-list.

mod common;

use std::net::SocketAddr;

use base64::Engine;
use bytes::{Buf, Bytes};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prost::Message;
use serde_json::json;
use session_service::{pb, wire::status::error_info};

const PAGE: &str = "http://127.0.0.1:5173";

async fn web_app(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |s| {
        s.server.grpc_web = true;
        s.server.cors_allowed_origins = vec![PAGE.to_owned()];
    })
    .await
}

/// One HTTP/1.1 exchange on a fresh connection.
async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Response<Bytes> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

/// A gRPC-Web unary call from `origin`, as user 1 (auth mode "none").
async fn call<M: Message>(addr: SocketAddr, method: &str, msg: &M, origin: &str) -> Response<Bytes> {
    let body = msg.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend((body.len() as u32).to_be_bytes());
    framed.extend(body);
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/pixsim.session.v1.SessionService/{method}"))
        .header("host", addr.to_string())
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("x-user-id", "1")
        .header("origin", origin)
        .body(Full::new(Bytes::from(framed)))
        .unwrap();
    send(addr, req).await
}

/// The data frame's message and the trailers, from a gRPC-Web response body.
fn frames(mut body: Bytes) -> (Option<Bytes>, Vec<(String, String)>) {
    let (mut message, mut trailers) = (None, Vec::new());
    while body.remaining() >= 5 {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        let payload = body.split_to(len);
        if flag & 0x80 == 0 {
            message = Some(payload);
        } else {
            let text = String::from_utf8(payload.to_vec()).unwrap();
            trailers = text
                .split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
        }
    }
    (message, trailers)
}

fn trailer<'a>(trailers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    trailers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

backend_tests! {
    a_browser_creates_updates_and_reads_an_aborted_with_its_details => unary;
}

async fn unary(backend: Backend) {
    let app = web_app(backend).await;
    let create = pb::CreateSessionRequest {
        scene_id: 1,
        entry_node_id: 10,
        flags: Some(obj(json!({"gold": 1}))),
        ..Default::default()
    };
    let answer = call(app.addr, "CreateSession", &create, PAGE).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.headers()["access-control-allow-origin"], PAGE);
    let exposed = answer.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(exposed.contains("grpc-status-details-bin"), "{exposed}");
    let (message, trailers) = frames(answer.into_body());
    assert_eq!(trailer(&trailers, "grpc-status"), Some("0"));
    let created = pb::GameSession::decode(message.expect("a GameSession")).unwrap();
    assert_eq!(created.version, 1);

    // A stale write: ABORTED, with ErrorInfo and the current session in the details.
    let update = |gold: i64| pb::UpdateSessionRequest {
        session_id: created.id,
        flags: Some(obj(json!({ "gold": gold }))),
        expected_version: Some(1),
        ..Default::default()
    };
    let (_, ok) = frames(
        call(app.addr, "UpdateSession", &update(2), PAGE)
            .await
            .into_body(),
    );
    assert_eq!(trailer(&ok, "grpc-status"), Some("0"));
    // An error is "trailers-only": its status travels in the response headers.
    let refused = call(app.addr, "UpdateSession", &update(3), PAGE).await;
    let header = |name: &str| {
        refused
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("grpc-status").as_deref(), Some("10"), "ABORTED");
    let details = header("grpc-status-details-bin").expect("details");
    let details = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(details.trim_end_matches('='))
        .unwrap();
    let status = tonic::Status::with_details(tonic::Code::Aborted, "", details.into());
    assert_eq!(error_info(&status).unwrap().reason, "VERSION_CONFLICT");
    let current = session_service::wire::status::conflict_session(&status).expect("the current session");
    assert_eq!(current.version, 2);
    app.finish().await;
}

#[tokio::test]
async fn cors_allows_the_listed_origin_and_no_other() {
    let app = web_app(Backend::Sqlite).await;
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(format!(
                "http://{}/pixsim.session.v1.SessionService/GetSession",
                app.addr
            ))
            .header("host", app.addr.to_string())
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-grpc-web,x-user-id,authorization",
            )
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let allowed = send(app.addr, preflight(PAGE)).await;
    assert!(allowed.status().is_success(), "{:?}", allowed.status());
    assert_eq!(allowed.headers()["access-control-allow-origin"], PAGE);
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(
        headers.contains("x-grpc-web") && headers.contains("authorization"),
        "{headers}"
    );

    let other = send(app.addr, preflight("http://evil.example")).await;
    assert!(
        !other.headers().contains_key("access-control-allow-origin"),
        "a browser refuses the call without it"
    );
    let get = pb::GetSessionRequest::strong(1);
    let call_from_other = call(app.addr, "GetSession", &get, "http://evil.example").await;
    assert!(
        !call_from_other
            .headers()
            .contains_key("access-control-allow-origin")
    );
    app.finish().await;
}

#[tokio::test]
async fn without_grpc_web_the_port_speaks_only_grpc() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let shaken = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await;
    let refused = match shaken {
        Err(_) => true,
        Ok((mut sender, conn)) => {
            tokio::spawn(conn);
            let req = Request::builder()
                .method(Method::POST)
                .uri(format!(
                    "http://{}/pixsim.session.v1.SessionService/GetSession",
                    app.addr
                ))
                .header("content-type", "application/grpc-web+proto")
                .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
                .unwrap();
            sender.send_request(req).await.is_err()
        }
    };
    assert!(refused, "an HTTP/1.1 gRPC-Web call is not served");
    app.finish().await;
}
