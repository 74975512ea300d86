//! The gRPC contract end to end: every RPC of the core, its errors and details.

mod common;

use common::*;
use prost::Message;
use serde_json::json;
use session_service::{
    pb,
    wire::status::{conflict_session, error_info, rpc_status},
};
use tonic::Code;

backend_tests! {
    a_stale_expected_version_is_aborted_with_the_current_session_in_the_details => stale_version_is_aborted;
    absent_fields_stay_and_present_ones_replace_whole => absent_fields_stay;
    an_update_with_nothing_to_change_keeps_the_version => no_op_update;
    advance_moves_from_the_current_node_and_refuses_another => advance;
    sessions_of_other_users_look_absent => other_users;
    delete_removes_the_session_and_a_stale_delete_is_aborted => delete;
    list_sessions_pages_newest_first_and_filters_by_world => list_sessions;
    events_record_every_version_oldest_first_with_diffs => events;
    events_are_capped_per_session => events_capped;
    relationships_are_normalized_on_write_and_returned_as_stored => normalized_on_write;
}

async fn stale_version_is_aborted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 7, json!({"gold": 1})).await;
    assert_eq!(s.version, 1);
    let update = |v: i64, gold: i64| pb::UpdateSessionRequest {
        session_id: s.id,
        flags: Some(obj(json!({ "gold": gold }))),
        expected_version: Some(v),
        ..Default::default()
    };
    let v2 = c
        .update_session(as_user(7, update(1, 2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v2.version, 2);

    let err = c.update_session(as_user(7, update(1, 3))).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    let rpc = rpc_status(&err).expect("google.rpc.Status in the details");
    assert_eq!(rpc.code, Code::Aborted as i32);
    let info = error_info(&err).expect("ErrorInfo");
    assert_eq!(info.reason, "VERSION_CONFLICT");
    assert_eq!(info.domain, "session.pixsim7");
    assert_eq!(info.metadata["expected_version"], "1");
    assert_eq!(info.metadata["current_version"], "2");
    let any = rpc
        .details
        .iter()
        .find(|a| a.type_url == "type.googleapis.com/pixsim.session.v1.GameSession")
        .expect("the session packed as Any");
    let packed = pb::GameSession::decode(any.value.as_slice()).unwrap();
    let fetched = c
        .get_session(as_user(7, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(packed, fetched);
    assert_eq!(packed, v2);
    assert_eq!(conflict_session(&err).unwrap().version, 2);
    app.finish().await;
}

async fn absent_fields_stay(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({"a": 1, "b": {"c": 2}})).await;
    let req = pb::UpdateSessionRequest {
        session_id: s.id,
        world_time: Some(90.5),
        ..Default::default()
    };
    let u = c.update_session(as_user(1, req)).await.unwrap().into_inner();
    assert_eq!(u.world_time, 90.5);
    assert_eq!(json(&u.flags), json!({"a": 1, "b": {"c": 2}}));
    let req = pb::UpdateSessionRequest {
        session_id: s.id,
        flags: Some(obj(json!({"z": true}))),
        ..Default::default()
    };
    let u = c.update_session(as_user(1, req)).await.unwrap().into_inner();
    assert_eq!(
        json(&u.flags),
        json!({"z": true}),
        "present flags replace the stored ones whole"
    );
    assert_eq!(u.world_time, 90.5);
    assert_eq!(u.version, 3);
    assert!(u.updated_at.unwrap().seconds >= s.updated_at.unwrap().seconds);
    app.finish().await;
}

async fn no_op_update(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({"a": 1})).await;
    let empty = pb::UpdateSessionRequest {
        session_id: s.id,
        expected_version: Some(1),
        ..Default::default()
    };
    let u = c.update_session(as_user(1, empty)).await.unwrap().into_inner();
    assert_eq!(u.version, 1);
    let same = pb::UpdateSessionRequest {
        session_id: s.id,
        flags: Some(obj(json!({"a": 1}))),
        ..Default::default()
    };
    let u = c.update_session(as_user(1, same)).await.unwrap().into_inner();
    assert_eq!(u.version, 1, "identical values change nothing");
    let events = c
        .list_session_events(as_user(
            1,
            pb::ListSessionEventsRequest {
                session_id: s.id,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(events.events.len(), 1, "only session_created");
    app.finish().await;
}

async fn advance(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let adv = |from: i64, to: i64| pb::AdvanceSessionRequest {
        session_id: s.id,
        edge_id: 77,
        from_node_id: from,
        to_node_id: to,
        ..Default::default()
    };
    let moved = c
        .advance_session(as_user(1, adv(10, 11)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((moved.current_node_id, moved.version), (11, 2));
    let err = c.advance_session(as_user(1, adv(10, 12))).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(error_info(&err).unwrap().reason, "WRONG_NODE");
    let events = c
        .list_session_events(as_user(
            1,
            pb::ListSessionEventsRequest {
                session_id: s.id,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let last = events.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.edge_id, last.node_id, last.version),
        ("advance", Some(77), Some(11), 2)
    );
    assert_eq!(
        json(&last.diff),
        json!({"current_node_id": {"old": 10, "new": 11}})
    );
    app.finish().await;
}

async fn other_users(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({"mine": true})).await;
    let get = c
        .get_session(as_user(2, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::NotFound);
    let missing = c
        .get_session(as_user(2, pb::GetSessionRequest::strong(s.id + 1000)))
        .await
        .unwrap_err();
    assert_eq!(
        missing.message(),
        get.message(),
        "another user's session is indistinguishable from none"
    );
    let upd = pb::UpdateSessionRequest {
        session_id: s.id,
        world_time: Some(1.0),
        expected_version: Some(1),
        ..Default::default()
    };
    assert_eq!(
        c.update_session(as_user(2, upd)).await.unwrap_err().code(),
        Code::NotFound
    );
    let del = pb::DeleteSessionRequest {
        session_id: s.id,
        ..Default::default()
    };
    assert_eq!(
        c.delete_session(as_user(2, del)).await.unwrap_err().code(),
        Code::NotFound
    );
    let ev = pb::ListSessionEventsRequest {
        session_id: s.id,
        ..Default::default()
    };
    assert_eq!(
        c.list_session_events(as_user(2, ev)).await.unwrap_err().code(),
        Code::NotFound
    );
    let listed = c
        .list_sessions(as_user(2, pb::ListSessionsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sessions.is_empty());
    // An admin may act on it.
    let got = c
        .get_session(as_admin(99, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.user_id, 1);
    // No identity at all is UNAUTHENTICATED.
    let anon = c
        .get_session(tonic::Request::new(pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap_err();
    assert_eq!(anon.code(), Code::Unauthenticated);
    // User ids are positive: 0 is reserved for a service acting for no user.
    for bad in ["0", "-3", "one"] {
        let err = c
            .get_session(as_user_header(bad, pb::GetSessionRequest::strong(s.id)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "x-user-id {bad}");
    }
    app.finish().await;
}

async fn delete(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let stale = pb::DeleteSessionRequest {
        session_id: s.id,
        expected_version: Some(5),
        ..Default::default()
    };
    let err = c.delete_session(as_user(1, stale)).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    assert_eq!(conflict_session(&err).unwrap().version, 1);
    let ok = pb::DeleteSessionRequest {
        session_id: s.id,
        expected_version: Some(1),
        ..Default::default()
    };
    c.delete_session(as_user(1, ok)).await.unwrap();
    let gone = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let again = pb::DeleteSessionRequest {
        session_id: s.id,
        ..Default::default()
    };
    assert_eq!(
        c.delete_session(as_user(1, again)).await.unwrap_err().code(),
        Code::NotFound
    );
    app.finish().await;
}

async fn list_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let req = pb::CreateSessionRequest {
            scene_id: 1,
            entry_node_id: 1,
            world_id: (i % 2 == 0).then_some(42),
            ..Default::default()
        };
        ids.push(c.create_session(as_user(3, req)).await.unwrap().into_inner().id);
    }
    create(&mut c, 4, json!({})).await; // someone else's
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListSessionsRequest {
            page_size: 2,
            page_token: token.clone(),
            world_id: None,
        };
        let page = c.list_sessions(as_user(3, req)).await.unwrap().into_inner();
        assert!(page.sessions.len() <= 2);
        seen.extend(page.sessions.iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every session once");
    let req = pb::ListSessionsRequest {
        page_size: 10,
        page_token: String::new(),
        world_id: Some(42),
    };
    let world = c.list_sessions(as_user(3, req)).await.unwrap().into_inner();
    assert_eq!(world.sessions.len(), 3);
    assert!(world.sessions.iter().all(|s| s.world_id == Some(42)));
    app.finish().await;
}

async fn events(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({"n": 0})).await;
    for n in 1..=4 {
        let req = pb::UpdateSessionRequest {
            session_id: s.id,
            flags: Some(obj(json!({ "n": n }))),
            ..Default::default()
        };
        c.update_session(as_user(1, req)).await.unwrap();
    }
    let mut versions = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListSessionEventsRequest {
            session_id: s.id,
            page_size: 2,
            page_token: token.clone(),
        };
        let page = c.list_session_events(as_user(1, req)).await.unwrap().into_inner();
        versions.extend(page.events.iter().map(|e| (e.version, e.action.clone())));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let want: Vec<_> = (1..=5)
        .map(|v| (v, if v == 1 { "session_created" } else { "update" }.to_string()))
        .collect();
    assert_eq!(versions, want);
    let all = c
        .list_session_events(as_user(
            1,
            pb::ListSessionEventsRequest {
                session_id: s.id,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(
        json(&all[2].diff),
        json!({"flags": {"old": {"n": 1}, "new": {"n": 2}}})
    );
    app.finish().await;
}

async fn events_capped(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.database.max_events_per_session = 5).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    // Advances world time once per `times`, then lists the session's events.
    async fn advance_and_list(
        c: &mut pb::session_service_client::SessionServiceClient<tonic::transport::Channel>,
        id: i64,
        times: std::ops::RangeInclusive<i32>,
    ) -> Vec<i64> {
        for t in times {
            let req = pb::UpdateSessionRequest {
                session_id: id,
                world_time: Some(t as f64),
                ..Default::default()
            };
            c.update_session(as_user(1, req)).await.unwrap();
        }
        let req = pb::ListSessionEventsRequest {
            session_id: id,
            ..Default::default()
        };
        let page = c.list_session_events(as_user(1, req)).await.unwrap().into_inner();
        page.events.iter().map(|e| e.version).collect()
    }
    let versions = advance_and_list(&mut c, s.id, 1..=9).await;
    assert_eq!(versions, vec![6, 7, 8, 9, 10], "the newest 5 are kept");
    // Past a prune (versions 1..=32 are deleted when version 37 is written) and
    // between prunes, the list is still exactly the newest 5.
    let versions = advance_and_list(&mut c, s.id, 10..=39).await;
    assert_eq!(versions, vec![36, 37, 38, 39, 40], "the newest 5 after a prune");
    // And the pruned ones are gone from the table, not only from the list.
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(app.db.url.clone()).await.unwrap();
    let sql = format!(
        "SELECT MIN(version) AS v FROM session_events WHERE session_id = {}",
        s.id
    );
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    let oldest: i64 = row.try_get("", "v").unwrap();
    assert_eq!(oldest, 33, "versions 1..=32 were deleted at version 37");
    app.finish().await;
}

async fn normalized_on_write(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let rel = json!({"npc:5": {"affinity": 62, "chemistry": 61, "trust": 45}, "network": {"x": 1}});
    let req = pb::UpdateSessionRequest {
        session_id: s.id,
        relationships: Some(obj(rel)),
        ..Default::default()
    };
    let u = c.update_session(as_user(1, req)).await.unwrap().into_inner();
    let stored = json(&u.relationships);
    assert_eq!(stored["npc:5"]["tierId"], "close_friend");
    assert_eq!(stored["npc:5"]["intimacyLevelId"], "intimate");
    assert_eq!(stored["network"], json!({"x": 1}));
    let got = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json(&got.relationships), stored);
    let bad = pb::UpdateSessionRequest {
        session_id: s.id,
        relationships: Some(obj(json!({"npc:6": 5}))),
        ..Default::default()
    };
    let err = c.update_session(as_user(1, bad)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    app.finish().await;
}
