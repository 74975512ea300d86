//! Request decoding + validation + the JSON helpers, on arbitrary bytes.
//!
//! The first byte picks a request type; the rest is decoded as that protobuf
//! message, parsed into a domain command exactly as the server does, and — when
//! valid — applied to a session (patch, advance, the session helpers, relationship
//! normalization, JSON limits). Nothing may panic; everything valid must survive a
//! round trip through the wire types.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use session_service::{
    domain::{
        Change, CreateRequest, JsonLimits, JsonMap, NewSession, Session, WorldRules, Write, normalize_relationships,
    },
    pb,
    wire::{json_to_struct, struct_to_json},
};

fn session() -> Session {
    let t = chrono::DateTime::from_timestamp(0, 0).unwrap();
    Session {
        id: 1,
        ..NewSession::parse(1, 1, None, None).unwrap().to_session(1, t)
    }
}

fn exercise(write: Write) {
    let base = session();
    let Ok(mut next) = write.change.apply(&base) else {
        return;
    };
    let rules = WorldRules::defaults(0);
    if normalize_relationships(&mut next.relationships, &rules).is_ok() {
        let once = next.relationships.clone();
        normalize_relationships(&mut next.relationships, &rules).expect("normalized twice");
        assert_eq!(once, next.relationships, "normalization is idempotent");
    }
    let _ = next.check_limits(&JsonLimits::default());
    // What the server would send back decodes to the same session.
    let wire = pb::GameSession::from(&next);
    let back = Session::try_from(wire).expect("a session survives the wire");
    assert_eq!(back.flags, next.flags);
    if let Change::Ops(ops) = &write.change {
        for op in ops {
            let again =
                session_service::domain::SessionOp::try_from(pb::SessionOp::from(op)).expect("op round trip");
            assert_eq!(&again, op);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((kind, body)) = data.split_first() else {
        return;
    };
    match kind % 6 {
        0 => {
            if let Ok(r) = pb::UpdateSessionRequest::decode(body) {
                if let Ok(w) = Write::try_from(r) {
                    exercise(w);
                }
            }
        }
        1 => {
            if let Ok(r) = pb::MutateSessionRequest::decode(body) {
                if let Ok(w) = Write::try_from(r) {
                    exercise(w);
                }
            }
        }
        2 => {
            if let Ok(r) = pb::AdvanceSessionRequest::decode(body) {
                if let Ok(w) = Write::try_from(r) {
                    exercise(w);
                }
            }
        }
        3 => {
            if let Ok(r) = pb::CreateSessionRequest::decode(body) {
                let _ = CreateRequest::try_from(r);
            }
        }
        4 => {
            if let Ok(r) = pb::PutWorldRulesRequest::decode(body) {
                if let Ok(put) = session_service::domain::PutRules::try_from(r) {
                    let rules = put.rules;
                    let mut rel = JsonMap::new();
                    rel.insert(
                        "npc:1".into(),
                        serde_json::json!({"affinity": 50, "trust": 50, "chemistry": 50}),
                    );
                    normalize_relationships(&mut rel, &rules).expect("valid rules normalize");
                }
            }
        }
        _ => {
            // Arbitrary JSON through the Struct conversion and the limits.
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body) {
                let _ = JsonLimits::default().check("flags", &map);
                if let Ok(once) = struct_to_json(json_to_struct(&map), "flags") {
                    let twice =
                        struct_to_json(json_to_struct(&once), "flags").expect("canonical JSON converts");
                    assert_eq!(once, twice, "canonical JSON is a fixed point");
                }
            }
        }
    }
});
