//! The hot paths: group commit answers every write as if it were alone, and reads
//! with `min_version` never go back in time while strong reads stay strong.

mod common;

use common::{
    metrics::{metrics_on, scrape, value},
    redis::{shared_redis, unique_prefix},
    *,
};
use serde_json::json;
use session_service::{
    domain::{Planned, RequestId, Session, SessionPatch},
    pb,
    store::{Cas, Link, Owner, RequestKey, Store, StoreError, WriteMeta},
    wire::status::error_info,
};
use tonic::Code;

async fn store(db: &TestDb) -> Store {
    let store = Store::connect(&common::store_settings(&db.url))
        .await
        .expect("store");
    store.migrate_up(None).await.expect("migrations");
    store
}

async fn new_session(store: &Store, counter: i64) -> Session {
    let mut s = session_service::domain::NewSession::parse(1, 1, None, None)
        .unwrap()
        .to_session(1, chrono::Utc::now());
    s.flags = json!({ "counter": counter }).as_object().unwrap().clone();
    store.create(&s, 0, None).await.expect("create")
}

/// The write that sets `counter` to `to`, computed from `base`.
fn set_counter(base: &Session, to: i64) -> Planned {
    let patch = SessionPatch {
        flags: Some(json!({ "counter": to }).as_object().unwrap().clone()),
        ..Default::default()
    };
    Planned {
        next: patch.applied(base),
        rules_version: 0,
    }
}

fn meta(request: Option<RequestKey<'_>>) -> WriteMeta<'_> {
    WriteMeta {
        action: "update",
        edge_id: None,
        node_id: None,
        request,
    }
}

backend_tests! {
    a_batch_answers_each_write_as_it_would_be_answered_alone => batch_outcomes;
    every_stored_diff_is_the_one_computed => stored_diffs;
    with_statements_overlapping_a_session_is_still_written_once_per_version => overlapping_statements;
    reads_at_a_min_version_never_go_back_and_name_what_they_wait_for => min_version_reads;
    a_replay_acknowledging_a_write_that_never_reached_the_cache_refreshes_it => replay_refreshes_cache;
    a_chain_writes_each_link_at_its_own_version_with_its_own_event_and_record => chain_links;
    writers_of_one_hot_session_share_statements_and_each_gets_its_own_answer => folded_writes;
}

/// A first attempt committed, then was cancelled before its write-through (simulated
/// by writing through a second store handle): the cache still holds the older version.
/// The retry is answered from the idempotency record, which acknowledges the write,
/// so from then on a strong read must see it.
async fn replay_refreshes_cache(backend: Backend) {
    let redis = shared_redis();
    let app = TestApp::spawn_with(backend, |s| {
        if let Some(url) = redis {
            s.redis.url = Some(url);
            s.redis.key_prefix = unique_prefix();
        }
    })
    .await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({ "n": 0 })).await;
    let cached = c.get_session(get_at(s.id, None)).await.unwrap().into_inner();
    assert_eq!(cached.version, 1);
    let behind = store(&app.db).await;
    let base = behind.get(s.id, Owner::Any).await.unwrap().unwrap();
    let id = RequestId::parse("first-attempt").unwrap().unwrap();
    let key = RequestKey {
        user_id: 1,
        request_id: &id,
    };
    let committed = behind
        .cas(Owner::User(1), &base, set_counter(&base, 1), meta(Some(key)))
        .await
        .unwrap();
    behind.close().await;
    let retry = pb::UpdateSessionRequest {
        session_id: s.id,
        flags: Some(obj(json!({ "counter": 1 }))),
        expected_version: Some(1),
        request_id: "first-attempt".into(),
        ..Default::default()
    };
    let answered = c.update_session(as_user(1, retry)).await.unwrap().into_inner();
    assert_eq!(answered.version, committed.version, "the recorded answer");
    let read = c.get_session(get_at(s.id, None)).await.unwrap().into_inner();
    assert_eq!(
        read.version, committed.version,
        "a strong read sees the acknowledged write"
    );
    app.finish().await;
}

async fn batch_outcomes(backend: Backend) {
    let mut db = TestDb::create(backend).await;
    let store = store(&db).await;
    let fresh = new_session(&store, 0).await;
    let moved_on = new_session(&store, 0).await;
    let reuses_id = new_session(&store, 0).await;
    let recorded = new_session(&store, 0).await;
    let mut missing = fresh.clone();
    missing.id = 1_000_000;
    // `moved_on` goes to version 2, so a write computed from version 1 conflicts.
    let v2 = store
        .cas(Owner::Any, &moved_on, set_counter(&moved_on, 1), meta(None))
        .await
        .unwrap();
    // Request id "taken" is recorded by a write of `recorded`.
    let taken = RequestId::parse("taken").unwrap().unwrap();
    let taken_key = RequestKey {
        user_id: 1,
        request_id: &taken,
    };
    let recorded_v2 = store
        .cas(
            Owner::Any,
            &recorded,
            set_counter(&recorded, 5),
            meta(Some(taken_key)),
        )
        .await
        .unwrap();
    let new_id = RequestId::parse("new").unwrap().unwrap();
    let new_key = RequestKey {
        user_id: 1,
        request_id: &new_id,
    };
    let writes = vec![
        Cas {
            owner: Owner::User(1),
            base: &fresh,
            planned: set_counter(&fresh, 10),
            meta: meta(None),
        },
        Cas {
            owner: Owner::User(1),
            base: &moved_on,
            planned: set_counter(&moved_on, 10),
            meta: meta(None),
        },
        Cas {
            owner: Owner::User(1),
            base: &reuses_id,
            planned: set_counter(&reuses_id, 10),
            meta: meta(Some(taken_key)),
        },
        Cas {
            owner: Owner::User(1),
            base: &missing,
            planned: set_counter(&missing, 10),
            meta: meta(None),
        },
        Cas {
            owner: Owner::User(1),
            base: &recorded_v2,
            planned: set_counter(&recorded_v2, 10),
            meta: meta(Some(new_key)),
        },
        // Another user's session looks absent, as it does alone.
        Cas {
            owner: Owner::User(2),
            base: &v2,
            planned: set_counter(&v2, 10),
            meta: meta(None),
        },
    ];
    let mut out = store.cas_batch(writes).await.into_iter();

    let written = out.next().unwrap().expect("an up-to-date write commits");
    assert_eq!(
        (written.version, written.flags["counter"].clone()),
        (2, json!(10))
    );
    match out.next().unwrap() {
        Err(StoreError::Conflict(current)) => {
            assert_eq!(*current, v2, "the conflict carries the current row")
        }
        other => panic!("a stale write conflicts: {other:?}"),
    }
    assert!(
        matches!(out.next().unwrap(), Err(StoreError::DuplicateRequest)),
        "a recorded request id is refused"
    );
    assert!(matches!(out.next().unwrap(), Err(StoreError::NotFound)));
    let with_new_id = out
        .next()
        .unwrap()
        .expect("a write with a new request id commits");
    assert_eq!(with_new_id.version, 3);
    assert!(
        matches!(out.next().unwrap(), Err(StoreError::NotFound)),
        "another user's session is not found"
    );

    // What committed is exactly what was answered; what was refused wrote nothing.
    let read = |id| store.get(id, Owner::Any);
    assert_eq!(read(fresh.id).await.unwrap().unwrap(), written);
    assert_eq!(read(moved_on.id).await.unwrap().unwrap(), v2);
    assert_eq!(read(reuses_id.id).await.unwrap().unwrap(), reuses_id);
    assert_eq!(read(recorded.id).await.unwrap().unwrap(), with_new_id);
    let record = store.request_record(new_key).await.unwrap().expect("recorded");
    assert_eq!(
        record.snapshot,
        Some(with_new_id),
        "the record answers a replay identically"
    );
    let events = |id| store.events(id, Owner::Any, None, 100);
    let versions = |e: Option<Vec<session_service::domain::SessionEvent>>| {
        e.unwrap().iter().map(|e| e.version).collect::<Vec<_>>()
    };
    assert_eq!(versions(events(fresh.id).await.unwrap()), vec![1, 2]);
    assert_eq!(versions(events(reuses_id.id).await.unwrap()), vec![1]);
    assert_eq!(versions(events(recorded.id).await.unwrap()), vec![1, 2, 3]);
    store.close().await;
    db.drop_now().await;
}

/// GetSession with `min_version`.
fn get_at(id: i64, min_version: Option<i64>) -> tonic::Request<pb::GetSessionRequest> {
    as_user(
        1,
        pb::GetSessionRequest {
            session_id: id,
            min_version,
        },
    )
}

async fn min_version_reads(backend: Backend) {
    let app = TestApp::spawn_with(backend, metrics_on).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({ "n": 0 })).await;
    let mut seen = s.version;
    for n in 1..=20 {
        let req = pb::UpdateSessionRequest {
            session_id: s.id,
            flags: Some(obj(json!({ "n": n }))),
            expected_version: Some(seen),
            ..Default::default()
        };
        seen = c
            .update_session(as_user(1, req))
            .await
            .unwrap()
            .into_inner()
            .version;
        let read = c
            .get_session(get_at(s.id, Some(seen)))
            .await
            .unwrap()
            .into_inner();
        assert!(read.version >= seen, "read {} after writing {seen}", read.version);
        seen = read.version;
    }
    let metrics = scrape(&app).await;
    assert!(
        value(&metrics, "session_cache_lookups_total{outcome=\"local\"}").unwrap_or(0.0) >= 20.0,
        "the reads were answered from the replica's own copy"
    );

    // A version the session has not reached is refused, naming why.
    let ahead = c.get_session(get_at(s.id, Some(seen + 5))).await.unwrap_err();
    assert_eq!(ahead.code(), Code::FailedPrecondition, "{ahead:?}");
    assert_eq!(
        error_info(&ahead).expect("ErrorInfo").reason,
        "VERSION_NOT_REACHED"
    );
    let zero = c.get_session(get_at(s.id, Some(0))).await.unwrap_err();
    assert_eq!(zero.code(), Code::InvalidArgument);
    assert_eq!(violated_field(&zero), "min_version");
    // Owners never change: another user's copy is not found, as with a strong read.
    let theirs = c
        .get_session(as_user(2, pb::GetSessionRequest::at_least(s.id, 1)))
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    app.finish().await;
}

/// Two replicas on one PostgreSQL and Redis: reads on one after writes acknowledged by
/// the other. A strong read always sees the write; a read at the acknowledged version
/// too, even though the second replica holds an older copy of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn strong_reads_see_writes_acknowledged_by_another_replica() {
    if !Backend::postgres_available() {
        return;
    }
    let Some(url) = shared_redis() else { return };
    let db = TestDb::create(Backend::Postgres).await;
    let mut settings = test_settings(&db);
    settings.redis.url = Some(url);
    settings.redis.key_prefix = unique_prefix();
    let db_b = TestDb::same_as(&db);
    let a = TestApp::start(db, settings.clone()).await;
    let b = TestApp::start(db_b, settings).await;
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let s = create(&mut ca, 1, json!({ "n": 0 })).await;
    // B now holds its own copy at version 1.
    let copy = cb.get_session(get_at(s.id, Some(1))).await.unwrap().into_inner();
    assert_eq!(copy.version, 1);
    let mut version = s.version;
    for n in 1..=30 {
        let req = pb::UpdateSessionRequest {
            session_id: s.id,
            flags: Some(obj(json!({ "n": n }))),
            expected_version: Some(version),
            ..Default::default()
        };
        version = ca
            .update_session(as_user(1, req))
            .await
            .unwrap()
            .into_inner()
            .version;
        let strong = cb.get_session(get_at(s.id, None)).await.unwrap().into_inner();
        assert_eq!(
            strong.version, version,
            "a strong read on B sees A's acknowledged write"
        );
        assert_eq!(json(&strong.flags), json!({ "n": n }));
        let at_least = cb
            .get_session(get_at(s.id, Some(version)))
            .await
            .unwrap()
            .into_inner();
        assert!(at_least.version >= version);
        // A guarded write on B from A's answer: B's base is the state at that version.
        if n % 10 == 0 {
            let req = pb::UpdateSessionRequest {
                session_id: s.id,
                world_time: Some(n as f64),
                expected_version: Some(version),
                ..Default::default()
            };
            let on_b = cb.update_session(as_user(1, req)).await.unwrap().into_inner();
            assert_eq!(
                (on_b.version, json(&on_b.flags)),
                (version + 1, json!({ "n": n }))
            );
            version = on_b.version;
        }
    }
    let mut b = b;
    b.stop().await;
    a.finish().await;
}

/// The links of a chain, each planned on the one before: counter set to `to[i]`.
fn links<'a>(base: &Session, to: &[i64], requests: &[Option<RequestKey<'a>>]) -> Vec<Link<'a>> {
    let mut out: Vec<Link<'a>> = Vec::new();
    for (&to, request) in to.iter().zip(requests) {
        let current = out.last().map_or(base, |l| &l.next);
        let mut next = set_counter(current, to).next;
        next.version = current.version + 1;
        out.push(Link {
            next,
            rules_version: 0,
            meta: meta(*request),
        });
    }
    out
}

/// Store::cas_chain: one guarded write of the row, and every link its own version,
/// event and idempotency record; a stale chain or one reusing a recorded request id
/// writes nothing.
async fn chain_links(backend: Backend) {
    let mut db = TestDb::create(backend).await;
    let store = store(&db).await;
    let s = new_session(&store, 0).await;
    let (a, b) = (
        RequestId::parse("a").unwrap().unwrap(),
        RequestId::parse("b").unwrap().unwrap(),
    );
    let key = |request_id| {
        Some(RequestKey {
            user_id: 1,
            request_id,
        })
    };
    let written = store
        .cas_chain(
            Owner::User(1),
            &s,
            links(&s, &[1, 2, 3], &[key(&a), None, key(&b)]),
        )
        .await
        .expect("the chain commits");
    let got: Vec<_> = written
        .iter()
        .map(|w| (w.version, w.flags["counter"].clone()))
        .collect();
    assert_eq!(got, vec![(2, json!(1)), (3, json!(2)), (4, json!(3))]);
    assert_eq!(store.get(s.id, Owner::Any).await.unwrap().unwrap(), written[2]);
    let events = store.events(s.id, Owner::Any, None, 100).await.unwrap().unwrap();
    let versions: Vec<_> = events.iter().map(|e| e.version).collect();
    assert_eq!(versions, vec![1, 2, 3, 4], "one event per link");
    assert_eq!(events[2].action, "update");
    assert_ne!(
        events[1].diff, events[2].diff,
        "each event is its own link's change"
    );
    let record = |request_id| {
        store.request_record(RequestKey {
            user_id: 1,
            request_id,
        })
    };
    let ra = record(&a).await.unwrap().expect("a is recorded");
    assert_eq!((ra.version, ra.snapshot), (2, Some(written[0].clone())));
    let rb = record(&b).await.unwrap().expect("b is recorded");
    assert_eq!((rb.version, rb.snapshot), (4, Some(written[2].clone())));

    match store
        .cas_chain(Owner::User(1), &s, links(&s, &[7, 8], &[None, None]))
        .await
    {
        Err(StoreError::Conflict(current)) => assert_eq!(*current, written[2]),
        other => panic!("a chain from an old version conflicts: {other:?}"),
    }
    let head = &written[2];
    let reused = store
        .cas_chain(Owner::User(1), head, links(head, &[7, 8], &[None, key(&a)]))
        .await;
    assert!(matches!(reused, Err(StoreError::DuplicateRequest)), "{reused:?}");
    assert_eq!(
        store.get(s.id, Owner::Any).await.unwrap().unwrap(),
        *head,
        "nothing written"
    );
    let events = store.events(s.id, Owner::Any, None, 100).await.unwrap().unwrap();
    assert_eq!(events.len(), 4);
    store.close().await;
    db.drop_now().await;
}

/// Many writers of one session without an expected version, on one replica: each
/// write commits exactly once, at its own version, and is answered with the session
/// as it left it; rounds of them share a statement; a resend of a recorded request
/// id among new writes gets its first answer back.
async fn folded_writes(backend: Backend) {
    const WRITERS: usize = 16;
    const EACH: usize = 8;
    let app = TestApp::spawn_with(backend, metrics_on).await;
    let mut c = app.client().await;
    let s = create(&mut c, 1, json!({})).await;
    let round = |tag: &'static str, resend: bool| {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|t| {
                let mut c = c.clone();
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    for k in 0..EACH {
                        if resend {
                            // The first write of this writer again, then a new one.
                            let again = c.mutate_session(as_user(1, increment(s.id, &format!("a{t}-0"))));
                            answers.push((format!("a{t}-0"), again.await.expect("a resend").into_inner()));
                        }
                        let id = format!("{tag}{t}-{k}");
                        let written = c.mutate_session(as_user(1, increment(s.id, &id))).await;
                        answers.push((id, written.expect("never ABORTED").into_inner()));
                    }
                    answers
                })
            })
            .collect();
        futures::future::join_all(tasks)
    };
    let mut first: std::collections::HashMap<String, pb::GameSession> = Default::default();
    for answers in round("a", false).await {
        for (id, session) in answers.unwrap() {
            // Each write's answer is the session right after it: one step per version.
            assert_eq!(steps(&session), session.version - 1, "{id}");
            first.insert(id, session);
        }
    }
    let mut versions: Vec<_> = first.values().map(|s| s.version).collect();
    versions.sort_unstable();
    let dense: Vec<i64> = (2..=(WRITERS * EACH) as i64 + 1).collect();
    assert_eq!(versions, dense, "every write at its own version, none twice");
    for answers in round("b", true).await {
        for (id, session) in answers.unwrap() {
            match first.get(&id) {
                Some(original) => assert_eq!(&session, original, "a resend gets its first answer: {id}"),
                None => assert_eq!(steps(&session), session.version - 1, "{id}"),
            }
        }
    }
    let last = c
        .get_session(as_user(1, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap()
        .into_inner();
    let total = (2 * WRITERS * EACH) as i64;
    assert_eq!(
        (last.version, steps(&last)),
        (total + 1, total),
        "nothing lost, nothing twice"
    );
    let folded = value(&scrape(&app).await, "session_writes_folded_total").unwrap_or(0.0);
    assert!(
        folded > 0.0,
        "rounds of queued writers shared statements: {folded}"
    );
    app.finish().await;
}

/// PostgreSQL gets a diff without the new value of a document the row also writes,
/// and puts it back from that column: every stored diff is still exactly the one
/// computed, with both documents changed, with one too large to quote, and for a
/// chain whose last link sets `flags` back to the row's value (the row sends no
/// `flags`, so that link's diff goes whole).
async fn stored_diffs(backend: Backend) {
    let mut db = TestDb::create(backend).await;
    let store = store(&db).await;
    let s = new_session(&store, 0).await;
    let obj = |v: serde_json::Value| v.as_object().unwrap().clone();
    let mut states = vec![s.clone()];
    let patches = [
        SessionPatch {
            flags: Some(obj(json!({"counter": 1, "name": "Ann"}))),
            relationships: Some(obj(json!({"npc:1": {"affinity": 5}}))),
            ..Default::default()
        },
        // Only relationships.
        SessionPatch {
            relationships: Some(obj(json!({"npc:1": {"affinity": 6}, "npc:2": {}}))),
            ..Default::default()
        },
        // Flags over 1 KiB: the diff says only {"changed": true}.
        SessionPatch {
            flags: Some(obj(json!({"counter": 2, "blob": "x".repeat(2048)}))),
            ..Default::default()
        },
    ];
    for patch in patches {
        let base = states.last().unwrap().clone();
        let planned = Planned {
            next: patch.applied(&base),
            rules_version: 0,
        };
        states.push(store.cas(Owner::Any, &base, planned, meta(None)).await.unwrap());
    }
    // A chain from `flags` F: F → {counter: 7} → F again.
    let base = states.last().unwrap().clone();
    let mut chain = links(&base, &[7], &[None]);
    let mut back = chain[0].next.clone();
    back.flags = base.flags.clone();
    back.version += 1;
    chain.push(Link {
        next: back,
        rules_version: 0,
        meta: meta(None),
    });
    states.extend(store.cas_chain(Owner::Any, &base, chain).await.unwrap());
    assert_eq!(states.last().unwrap().flags, base.flags);

    let events = store.events(s.id, Owner::Any, None, 100).await.unwrap().unwrap();
    assert_eq!(events.len(), states.len(), "one event per version");
    for (event, pair) in events[1..].iter().zip(states.windows(2)) {
        assert_eq!(event.version, pair[1].version);
        let computed = session_service::domain::diff(Some(&pair[0]), &pair[1]);
        assert_eq!(event.diff, computed, "the event of version {}", event.version);
    }
    assert_eq!(
        serde_json::Value::Object(events[3].diff.clone()),
        json!({"flags": {"changed": true}})
    );
    assert_eq!(
        events[1].diff["relationships"]["new"],
        json!({"npc:1": {"affinity": 5}})
    );
    db.drop_now().await;
}

/// Two statements in flight, the second started at once (`overlap_batch` 1): of ten
/// writes per session computed from the same version, exactly one commits, the nine
/// others are answered with the winner's state, and the session holds it.
async fn overlapping_statements(backend: Backend) {
    let mut db = TestDb::create(backend).await;
    let mut settings = common::store_settings(&db.url);
    settings.write_workers = 2;
    settings.overlap_batch = 1;
    let store = Store::connect(&settings).await.expect("store");
    store.migrate_up(None).await.expect("migrations");
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(new_session(&store, 0).await);
    }
    let writes = sessions.iter().flat_map(|s| {
        (1..=10).map(|to| {
            let store = store.clone();
            let base = s.clone();
            async move {
                let got = store
                    .cas(Owner::Any, &base, set_counter(&base, to), meta(None))
                    .await;
                (base.id, to, got)
            }
        })
    });
    let results = futures::future::join_all(writes).await;
    for s in &sessions {
        let mine: Vec<_> = results.iter().filter(|(id, _, _)| *id == s.id).collect();
        let won: Vec<_> = mine
            .iter()
            .filter_map(|(_, to, got)| got.as_ref().ok().map(|w| (*to, w.version)))
            .collect();
        assert_eq!(won.len(), 1, "one write of session {} commits: {won:?}", s.id);
        let (winner, version) = won[0];
        assert_eq!(version, 2);
        for (_, _, got) in &mine {
            match got {
                Ok(_) => {}
                Err(StoreError::Conflict(current)) => {
                    assert_eq!((current.version, &current.flags["counter"]), (2, &json!(winner)))
                }
                Err(e) => panic!("a write of session {} failed otherwise: {e}", s.id),
            }
        }
        let stored = store.get(s.id, Owner::Any).await.unwrap().unwrap();
        assert_eq!(stored.flags["counter"], json!(winner));
    }
    db.drop_now().await;
}
