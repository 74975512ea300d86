//! Would catch a read-then-write implementation: many writers, one session.

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::json;
use session_service::{pb, wire::status::conflict_session};
use tonic::Code;

backend_tests! {
    sixteen_writers_incrementing_one_counter_lose_no_update => sixteen_writers;
}

const TASKS: usize = 16;
const INCREMENTS: usize = 50;

async fn sixteen_writers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({"counter": 0})).await;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let mut c = app.client().await;
        let first = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            let mut conflicts = 0;
            let mut known = first;
            for _ in 0..INCREMENTS {
                loop {
                    let counter = json(&known.flags)["counter"].as_i64().unwrap();
                    let req = pb::UpdateSessionRequest {
                        session_id: known.id,
                        flags: Some(obj(json!({ "counter": counter + 1 }))),
                        expected_version: Some(known.version),
                        ..Default::default()
                    };
                    match c.update_session(as_user(1, req)).await {
                        Ok(r) => {
                            known = r.into_inner();
                            versions.push(known.version);
                            break;
                        }
                        Err(e) if e.code() == Code::Aborted => {
                            conflicts += 1;
                            // Re-apply on the current session from the details: no extra read.
                            known = pb::GameSession::from(conflict_session(&e).expect("current session"));
                        }
                        Err(e) => panic!("unexpected error: {e:?}"),
                    }
                }
            }
            (versions, conflicts)
        }));
    }
    let mut versions = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (v, c) = t.await.unwrap();
        versions.extend(v);
        conflicts += c;
    }
    let successes = versions.len();
    assert_eq!(successes, TASKS * INCREMENTS);
    let unique: HashSet<_> = versions.iter().collect();
    assert_eq!(
        unique.len(),
        successes,
        "no two successful responses carry the same version"
    );
    let last = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json(&last.flags)["counter"], json!(successes));
    assert_eq!(last.version, 1 + successes as i64);
    eprintln!("{backend:?}: {successes} increments, {conflicts} conflicts retried");
    app.finish().await;
}
