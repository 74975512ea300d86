// figment's error type is large and not ours to shrink.
#![allow(clippy::result_large_err)]

use figment::Jail;

use super::*;

#[test]
fn the_defaults_load_and_validate() {
    Jail::expect_with(|_| {
        let s = Settings::load(None).expect("defaults load");
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:50051");
        assert!(s.database.url.starts_with("sqlite:"));
        assert_eq!(s.auth.mode, AuthModeName::None);
        assert_eq!(s.redis.url, None);
        Ok(())
    });
}

#[test]
fn a_file_then_the_environment_override_the_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "service.toml",
            r#"
            [server]
            listen = "127.0.0.1:6000"
            [redis]
            key_prefix = "from-file:"
            ttl_secs = 5
            "#,
        )?;
        jail.set_env("SESSION__REDIS__TTL_SECS", "7");
        jail.set_env("DATABASE_URL", "postgres://u:p@db/x");
        let s = Settings::load(Some(Path::new("service.toml"))).expect("loads");
        assert_eq!(s.server.listen.port(), 6000);
        assert_eq!(s.redis.key_prefix, "from-file:");
        assert_eq!(s.redis.ttl_secs, 7);
        assert_eq!(s.database.url, "postgres://u:p@db/x");
        Ok(())
    });
}

#[test]
fn a_yaml_file_works_too() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "service.yaml",
            "log:\n  format: json\nsessions:\n  max_json_depth: 10\n",
        )?;
        let s = Settings::load(Some(Path::new("service.yaml"))).expect("loads");
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.sessions.max_json_depth, 10);
        Ok(())
    });
}

#[test]
fn errors_name_the_bad_key() {
    Jail::expect_with(|jail| {
        jail.set_env("SESSION__SERVER__LISTEN", "not-an-address");
        let err = Settings::load(None).unwrap_err().to_string();
        assert!(err.to_lowercase().contains("server.listen"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.create_file("bad.toml", "[server]\nlisten_typo = 1\n")?;
        let err = Settings::load(Some(Path::new("bad.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_typo"), "{err}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        jail.set_env("SESSION__AUTH__MODE", "jwt");
        let err = Settings::load(None).unwrap_err().to_string();
        assert!(err.contains("auth.jwt"), "{err}");
        Ok(())
    });
}

#[test]
fn printed_settings_hide_secrets() {
    let mut s = Settings::default();
    s.database.url = "postgres://app:hunter2@db:5432/sessions".into();
    s.redis.url = Some("redis://:pw@cache:6379".into());
    s.auth.jwt.hs256_secret = Some("topsecret".into());
    let shown = toml::to_string(&s.redacted()).unwrap();
    for secret in ["hunter2", "pw@", "topsecret"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
    assert!(shown.contains("postgres://app:<redacted>@db:5432/sessions"));
}

#[test]
fn the_example_file_documents_exactly_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let from_file: Settings = Figment::from(Toml::file_exact(&path))
        .extract()
        .expect("example loads");
    assert_eq!(from_file, Settings::default());
}

#[test]
fn cors_origins_are_exact_scheme_host_port() {
    assert!(valid_origin("http://127.0.0.1:5173"));
    assert!(valid_origin("https://game.example.com"));
    for bad in [
        "*",
        "game.example.com",
        "https://game.example.com/",
        "ftp://x",
        "https://*.example.com",
    ] {
        assert!(!valid_origin(bad), "{bad}");
    }
}
