//! Verified identity: JWT (HS256 and public keys with rotation) and mTLS with a
//! trusted header, end to end through the real server.

mod common;

use std::{path::Path, time::Duration};

use common::{pki::Ca, *};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;
use session_service::{config::AuthModeName, pb, pb::session_service_client::SessionServiceClient};
use tonic::{
    Code, Request,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(sub: i64, exp_in: i64, aud: &str, scope: &str) -> serde_json::Value {
    json!({ "sub": sub.to_string(), "exp": now() + exp_in, "iss": "pixsim-auth", "aud": aud, "scope": scope })
}

fn hs256(claims: &serde_json::Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn with_token<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn create_req() -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        scene_id: 1,
        entry_node_id: 1,
        ..Default::default()
    }
}

#[tokio::test]
async fn jwt_mode_refuses_every_bad_token_alike_and_scopes_access() {
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.auth.mode = AuthModeName::Jwt;
        s.auth.jwt.hs256_secret = Some(SECRET.into());
        s.auth.jwt.issuer = Some("pixsim-auth".into());
        s.auth.jwt.audience = Some("sessions".into());
    })
    .await;
    let mut c = app.client().await;
    let good = hs256(&claims(1, 300, "sessions", ""), SECRET);
    let mine = c
        .create_session(with_token(&good, create_req()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.user_id, 1, "the user is the token's sub");

    let mut spoofed = with_token(&good, pb::GetSessionRequest::strong(mine.id));
    spoofed.metadata_mut().insert("x-user-id", "2".parse().unwrap());
    assert!(
        c.get_session(spoofed).await.is_ok(),
        "x-user-id cannot override a token"
    );

    let mut wrong_iss = claims(1, 300, "sessions", "");
    wrong_iss["iss"] = json!("someone-else");
    let bad_tokens = [
        ("no token", None),
        ("garbage", Some("not.a.jwt".to_string())),
        ("expired", Some(hs256(&claims(1, -120, "sessions", ""), SECRET))),
        (
            "wrong signature",
            Some(hs256(
                &claims(1, 300, "sessions", ""),
                "another-secret-also-32-bytes-long!!",
            )),
        ),
        (
            "wrong audience",
            Some(hs256(&claims(1, 300, "billing", ""), SECRET)),
        ),
        ("wrong issuer", Some(hs256(&wrong_iss, SECRET))),
        (
            "zero sub (user ids are positive)",
            Some(hs256(&claims(0, 300, "sessions", ""), SECRET)),
        ),
        (
            "non-integer sub",
            Some(hs256(
                &json!({"sub": "alice", "exp": now() + 300, "iss": "pixsim-auth", "aud": "sessions"}),
                SECRET,
            )),
        ),
    ];
    let mut messages = Vec::new();
    for (name, token) in bad_tokens {
        let req = match &token {
            Some(t) => with_token(t, pb::GetSessionRequest::strong(mine.id)),
            None => Request::new(pb::GetSessionRequest::strong(mine.id)),
        };
        let err = c.get_session(req).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{name}");
        messages.push(err.message().to_owned());
    }
    assert!(
        messages.iter().all(|m| m == &messages[0]),
        "no detail that helps guessing: {messages:?}"
    );
    assert_eq!(messages[0], "missing or invalid credentials");

    let other = hs256(&claims(2, 300, "sessions", ""), SECRET);
    let err = c
        .get_session(with_token(&other, pb::GetSessionRequest::strong(mine.id)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "another user's session looks absent");

    let admin = hs256(&claims(99, 300, "sessions", "read sessions:admin"), SECRET);
    let seen = c
        .get_session(with_token(&admin, pb::GetSessionRequest::strong(mine.id)))
        .await
        .unwrap();
    assert_eq!(seen.into_inner().user_id, 1, "an admin acts on any session");

    // Health and reflection stay open.
    let mut h = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    assert!(
        h.check(tonic_health::pb::HealthCheckRequest {
            service: String::new()
        })
        .await
        .is_ok()
    );
    app.finish().await;
}

fn sign(alg: Algorithm, kid: &str, private_pem: &str, claims: &serde_json::Value) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
        Algorithm::ES256 => EncodingKey::from_ec_pem(private_pem.as_bytes()),
        _ => EncodingKey::from_ed_pem(private_pem.as_bytes()),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn public_keys_are_chosen_by_kid_so_keys_can_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rsa_private = std::fs::read_to_string(fixtures.join("rsa_test_private.pem")).unwrap();
    std::fs::write(dir.path().join("ec-2026.pem"), ec.public_key_pem()).unwrap();
    std::fs::write(dir.path().join("ed-2027.pem"), ed.public_key_pem()).unwrap();
    std::fs::copy(
        fixtures.join("rsa_test_public.pem"),
        dir.path().join("rsa-old.pem"),
    )
    .unwrap();
    std::fs::write(dir.path().join("README.txt"), "ignored: not a .pem").unwrap();
    let keys_dir = dir.path().to_path_buf();
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.auth.mode = AuthModeName::Jwt;
        s.auth.jwt.public_keys_dir = Some(keys_dir);
    })
    .await;
    let mut c = app.client().await;
    let body = claims(5, 300, "any", "");
    let tokens = [
        sign(Algorithm::ES256, "ec-2026", &ec.serialize_pem(), &body),
        sign(Algorithm::EdDSA, "ed-2027", &ed.serialize_pem(), &body),
        sign(Algorithm::RS256, "rsa-old", &rsa_private, &body),
    ];
    for t in &tokens {
        let s = c
            .create_session(with_token(t, create_req()))
            .await
            .expect("every current key verifies");
        assert_eq!(s.into_inner().user_id, 5);
    }
    let forged = sign(Algorithm::EdDSA, "ec-2026", &ed.serialize_pem(), &body);
    let unknown = sign(Algorithm::ES256, "retired", &ec.serialize_pem(), &body);
    let hs = hs256(&body, SECRET);
    for t in [forged, unknown, hs] {
        let err = c.create_session(with_token(&t, create_req())).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    app.finish().await;
}

async fn tls_channel(
    app: &TestApp,
    ca: &str,
    client: Option<&common::pki::Pem>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(c) = client {
        tls = tls.identity(Identity::from_pem(&c.cert, &c.key));
    }
    Channel::from_shared(format!("https://{}", app.addr))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn mtls_services_act_for_the_user_they_name_and_untrusted_certificates_are_refused() {
    let ca = Ca::new("session-service test CA");
    let server = ca.issue("localhost", &["localhost", "127.0.0.1"], &[]);
    let backend_cert = ca.issue("game-backend", &[], &[]);
    let ops_cert = ca.issue("ops", &[], &["sessions:admin"]);
    let stranger = Ca::new("someone else's CA").issue("intruder", &[], &[]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let (cert, key, client_ca) = (
        write("server.crt", &server.cert),
        write("server.key", &server.key),
        write("ca.crt", &ca.pem.cert),
    );
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        s.auth.mode = AuthModeName::MtlsTrustedHeader;
        s.tls.cert_file = Some(cert);
        s.tls.key_file = Some(key);
        s.tls.client_ca_file = Some(client_ca);
    })
    .await;

    let mut backend = SessionServiceClient::new(
        tls_channel(&app, &ca.pem.cert, Some(&backend_cert))
            .await
            .unwrap(),
    );
    let s = backend
        .create_session(as_user(5, create_req()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.user_id, 5, "acts for the user in x-user-id");
    let err = backend
        .create_session(Request::new(create_req()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "a service must name the user");
    let err = backend
        .get_session(as_user(6, pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let mut ops = SessionServiceClient::new(tls_channel(&app, &ca.pem.cert, Some(&ops_cert)).await.unwrap());
    let seen = ops
        .get_session(Request::new(pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap();
    assert_eq!(seen.into_inner().user_id, 5, "the admin OU acts on any session");
    let err = ops
        .get_session(as_user_header("0", pb::GetSessionRequest::strong(s.id)))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unauthenticated,
        "a bad x-user-id is not taken as none"
    );
    let err = ops.create_session(Request::new(create_req())).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a new session needs an owner");
    assert_eq!(violated_field(&err), "x-user-id");
    let owned = ops.create_session(as_user(7, create_req())).await.unwrap();
    assert_eq!(owned.into_inner().user_id, 7, "an admin names the owner");

    for (name, client) in [
        ("untrusted certificate", Some(&stranger)),
        ("no certificate", None),
    ] {
        let refused = match tls_channel(&app, &ca.pem.cert, client).await {
            Err(_) => true,
            Ok(ch) => SessionServiceClient::new(ch)
                .get_session(as_user(5, pb::GetSessionRequest::strong(s.id)))
                .await
                .is_err(),
        };
        assert!(refused, "{name} is refused");
    }
    app.finish().await;
}

/// Whether a new TLS connection trusting only `ca` gets a session back.
async fn serves_to(app: &TestApp, ca: &str) -> bool {
    let Ok(channel) = tls_channel(app, ca, None).await else {
        return false;
    };
    SessionServiceClient::new(channel)
        .create_session(as_user(1, create_req()))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_renewed_certificate_is_served_to_new_connections_without_a_restart() {
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("renewed CA"));
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let install = |pem: &common::pki::Pem| {
        std::fs::write(&cert, &pem.cert).unwrap();
        std::fs::write(&key, &pem.key).unwrap();
    };
    install(&old_ca.issue("localhost", &["localhost"], &[]));
    let app = TestApp::spawn_with(Backend::Sqlite, |s| {
        common::metrics::metrics_on(s);
        s.tls.cert_file = Some(cert.clone());
        s.tls.key_file = Some(key.clone());
        s.tls.reload_interval_ms = 100;
    })
    .await;
    let reloads = |outcome: &'static str| {
        let app = &app;
        async move {
            let series = format!("session_tls_reloads_total{{outcome=\"{outcome}\"}}");
            common::metrics::value(&common::metrics::scrape(app).await, &series).unwrap_or(0.0)
        }
    };
    assert!(serves_to(&app, &old_ca.pem.cert).await);
    let open = SessionServiceClient::new(tls_channel(&app, &old_ca.pem.cert, None).await.unwrap());

    install(&new_ca.issue("localhost", &["localhost"], &[]));
    common::eventually(
        "the renewed certificate is loaded",
        Duration::from_secs(5),
        || async { (reloads("reloaded").await >= 1.0).then_some(()) },
    )
    .await;
    assert!(
        serves_to(&app, &new_ca.pem.cert).await,
        "new connections get the renewed certificate"
    );
    assert!(
        !serves_to(&app, &old_ca.pem.cert).await,
        "and no longer the old one"
    );
    let mut open = open;
    assert!(
        open.create_session(as_user(1, create_req())).await.is_ok(),
        "a connection made before keeps working"
    );

    // A broken renewal (key of another certificate) keeps the last good one.
    let other = new_ca.issue("localhost", &["localhost"], &[]);
    // (Installing the renewal may itself have been caught half-written and rejected.)
    let rejected = reloads("rejected").await;
    std::fs::write(&key, &other.key).unwrap();
    common::eventually(
        "the broken renewal is tried and rejected",
        Duration::from_secs(5),
        || async { (reloads("rejected").await > rejected).then_some(()) },
    )
    .await;
    assert_eq!(reloads("reloaded").await, 1.0, "and not loaded");
    assert!(
        serves_to(&app, &new_ca.pem.cert).await,
        "the last good certificate stays"
    );
    app.finish().await;
}

#[tokio::test]
async fn in_auth_mode_none_a_caller_without_a_usable_user_id_is_told_what_to_send() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut c = app.client().await;
    let missing = c
        .get_session(Request::new(pb::GetSessionRequest::strong(1)))
        .await
        .unwrap_err();
    let bad = c
        .get_session(as_user_header("alice", pb::GetSessionRequest::strong(1)))
        .await
        .unwrap_err();
    for err in [missing, bad] {
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(
            err.message().contains("x-user-id: <positive integer>"),
            "{}",
            err.message()
        );
    }
    app.finish().await;
}
