//! Every kind of bad input is INVALID_ARGUMENT naming the field, and changes nothing.

mod common;

use common::*;
use serde_json::{Value, json};
use session_service::{pb, pb::session_service_client::SessionServiceClient};
use tonic::{Code, Status, transport::Channel};

backend_tests! {
    bad_input_is_refused_with_the_field_named_and_changes_nothing => bad_input;
}

fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 1..levels {
        v = json!({ "a": v });
    }
    json!({ "a": v })
}

type Client = SessionServiceClient<Channel>;
type Call = Box<dyn Fn(Client, i64) -> futures::future::BoxFuture<'static, Result<(), Status>>>;

fn update(f: impl Fn(&mut pb::UpdateSessionRequest) + Send + Sync + 'static) -> Call {
    Box::new(move |mut c: Client, id| {
        let mut req = pb::UpdateSessionRequest {
            session_id: id,
            ..Default::default()
        };
        f(&mut req);
        Box::pin(async move { c.update_session(as_user(1, req)).await.map(|_| ()) })
    })
}

fn cases() -> Vec<(&'static str, &'static str, Call)> {
    let big = json!({ "blob": "x".repeat(256 * 1024) });
    vec![
        (
            "get with session_id 0",
            "session_id",
            Box::new(|mut c: Client, _| {
                Box::pin(async move {
                    c.get_session(as_user(1, pb::GetSessionRequest::strong(0)))
                        .await
                        .map(|_| ())
                })
            }),
        ),
        (
            "update with a negative session_id",
            "session_id",
            update(|r| r.session_id = -4),
        ),
        (
            "expected_version 0",
            "expected_version",
            update(|r| r.expected_version = Some(0)),
        ),
        (
            "world_time NaN",
            "world_time",
            update(|r| r.world_time = Some(f64::NAN)),
        ),
        (
            "world_time +inf",
            "world_time",
            update(|r| r.world_time = Some(f64::INFINITY)),
        ),
        (
            "world_time -inf",
            "world_time",
            update(|r| r.world_time = Some(f64::NEG_INFINITY)),
        ),
        (
            "negative world_time",
            "world_time",
            update(|r| r.world_time = Some(-1.0)),
        ),
        (
            "flags over 256 KiB",
            "flags",
            update(move |r| r.flags = Some(obj(big.clone()))),
        ),
        (
            "flags nested 25 levels",
            "flags",
            update(|r| r.flags = Some(obj(nested(25)))),
        ),
        (
            "relationships nested 25 levels",
            "relationships",
            update(|r| r.relationships = Some(obj(nested(25)))),
        ),
        (
            "an NPC entry that is not an object",
            "relationships.npc:1",
            update(|r| r.relationships = Some(obj(json!({"npc:1": 5})))),
        ),
        (
            "request_id of 129 characters",
            "request_id",
            update(|r| r.request_id = "r".repeat(129)),
        ),
        (
            "page_size over 1000",
            "page_size",
            Box::new(|mut c: Client, _| {
                let req = pb::ListSessionsRequest {
                    page_size: 1001,
                    ..Default::default()
                };
                Box::pin(async move { c.list_sessions(as_user(1, req)).await.map(|_| ()) })
            }),
        ),
        (
            "a malformed page_token",
            "page_token",
            Box::new(|mut c: Client, _| {
                let req = pb::ListSessionsRequest {
                    page_token: "garbage!".into(),
                    ..Default::default()
                };
                Box::pin(async move { c.list_sessions(as_user(1, req)).await.map(|_| ()) })
            }),
        ),
        (
            "events page_size over 1000",
            "page_size",
            Box::new(|mut c: Client, id| {
                let req = pb::ListSessionEventsRequest {
                    session_id: id,
                    page_size: 5000,
                    ..Default::default()
                };
                Box::pin(async move { c.list_session_events(as_user(1, req)).await.map(|_| ()) })
            }),
        ),
        (
            "create with scene_id 0",
            "scene_id",
            Box::new(|mut c: Client, _| {
                let req = pb::CreateSessionRequest {
                    scene_id: 0,
                    entry_node_id: 1,
                    ..Default::default()
                };
                Box::pin(async move { c.create_session(as_user(1, req)).await.map(|_| ()) })
            }),
        ),
        (
            "advance with from_node_id 0",
            "from_node_id",
            Box::new(|mut c: Client, id| {
                let req = pb::AdvanceSessionRequest {
                    session_id: id,
                    edge_id: 1,
                    from_node_id: 0,
                    to_node_id: 2,
                    ..Default::default()
                };
                Box::pin(async move { c.advance_session(as_user(1, req)).await.map(|_| ()) })
            }),
        ),
        (
            "delete with expected_version -1",
            "expected_version",
            Box::new(|mut c: Client, id| {
                let req = pb::DeleteSessionRequest {
                    session_id: id,
                    expected_version: Some(-1),
                    ..Default::default()
                };
                Box::pin(async move { c.delete_session(as_user(1, req)).await.map(|_| ()) })
            }),
        ),
    ]
}

async fn bad_input(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({"keep": "me"})).await;
    for (name, field, call) in cases() {
        let err = call(c.clone(), s.id).await.expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert_eq!(violated_field(&err), field, "{name}");
        let now = c
            .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(now, s, "{name} changed the session");
    }
    let listed = c
        .list_sessions(as_user(1, pb::ListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sessions.len(), 1, "nothing was created");
    app.finish().await;
}
