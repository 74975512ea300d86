//! Typed, layered settings: built-in defaults → optional file (`--config`, TOML or
//! YAML) → well-known variables (`DATABASE_URL`, `REDIS_URL`, `RUST_LOG`) →
//! `SESSION__<SECTION>__<KEY>` variables → command-line flags.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml, Yaml},
};
use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::{domain::JsonLimits, telemetry::logging::redact_url};

/// Every setting of the service. Unknown keys are errors, so a typo fails at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisConfig,
    pub auth: AuthSettings,
    pub tls: TlsSettings,
    pub rate_limit: RateLimitSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub sessions: SessionRules,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// gRPC address. Binding a non-loopback address needs verified auth (or the insecure flag).
    pub listen: SocketAddr,
    /// Optional plaintext address serving only grpc.health.v1 (Kubernetes probes cannot speak TLS).
    pub health_listen: Option<SocketAddr>,
    /// Allow `auth.mode = "none"` on a non-loopback address (development only).
    pub insecure_allow_no_auth: bool,
    /// Offer gRPC server reflection (grpcurl `list`/`describe`).
    pub reflection: bool,
    /// Requests running longer are cancelled with DEADLINE_EXCEEDED.
    pub request_timeout_ms: u64,
    /// Requests in flight at once; beyond it requests are shed with RESOURCE_EXHAUSTED.
    pub concurrency_limit: usize,
    /// Largest accepted request message, decoded.
    pub max_message_bytes: usize,
    pub http2_keepalive_interval_secs: u64,
    pub http2_keepalive_timeout_secs: u64,
    /// How long a stopping server waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    /// Also serve gRPC-Web (browsers) on the main port, over HTTP/1.1 and HTTP/2.
    pub grpc_web: bool,
    /// Origins (`scheme://host[:port]`) whose pages may call over gRPC-Web (CORS);
    /// empty: same-origin pages only.
    pub cors_allowed_origins: Vec<String>,
    /// Write each turn of an HTTP/2 connection to the socket at once (see
    /// `grpc/coalesce.rs`): a response's data and trailers in one write, not two.
    pub coalesce_writes: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 50051).into(),
            health_listen: None,
            insecure_allow_no_auth: false,
            reflection: true,
            request_timeout_ms: 10_000,
            concurrency_limit: 1024,
            max_message_bytes: 4 * 1024 * 1024,
            http2_keepalive_interval_secs: 30,
            http2_keepalive_timeout_secs: 10,
            shutdown_grace_secs: 20,
            grpc_web: false,
            cors_allowed_origins: Vec::new(),
            coalesce_writes: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` (the embedded default) or `postgres://…` (`DATABASE_URL`).
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
    pub health_probe_interval_ms: u64,
    pub max_events_per_session: i64,
    /// Apply pending migrations when `serve` starts.
    pub migrate_on_start: bool,
    /// PostgreSQL group commit: statements in flight at most, each carrying every
    /// guarded write queued when it starts (see `overlap_batch`).
    pub write_workers: usize,
    /// PostgreSQL group commit: most writes in one statement.
    pub max_batch: usize,
    /// PostgreSQL group commit: writes queued before a statement starts while
    /// another is in flight (up to `write_workers`); 1 starts it at once.
    pub overlap_batch: usize,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://session-service.db?mode=rwc".into(),
            max_connections: 16,
            acquire_timeout_ms: 3_000,
            health_probe_interval_ms: 2_000,
            max_events_per_session: 1_000,
            migrate_on_start: true,
            write_workers: 2,
            max_batch: 64,
            overlap_batch: 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://…` (`REDIS_URL`), or a Cluster (`redis-cluster://host:port,host:port…`)
    /// or the master of a Sentinel group (`redis-sentinel://host:26379,…/<master>`),
    /// `rediss…` with TLS; unset runs with an in-process cache instead.
    pub url: Option<String>,
    /// Prefix of every key and channel, to share a Redis between deployments.
    pub key_prefix: String,
    pub pool_size: usize,
    pub command_timeout_ms: u64,
    /// How long a write's answer waits for its write-through while Redis is
    /// connected but not answering (then it is answered UNAVAILABLE, WRITE_UNCONFIRMED).
    pub confirm_wait_ms: u64,
    pub ttl_secs: u64,
    pub tombstone_ttl_secs: u64,
    /// Sessions kept by the in-process cache when there is no Redis.
    pub local_capacity: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            key_prefix: String::new(),
            pool_size: 4,
            command_timeout_ms: 50,
            confirm_wait_ms: 2000,
            ttl_secs: 60,
            tombstone_ttl_secs: 30,
            local_capacity: 10_000,
        }
    }
}

/// `none`, `jwt` or `mtls-trusted-header`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthModeName {
    #[default]
    None,
    Jwt,
    MtlsTrustedHeader,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub mode: AuthModeName,
    /// The scope (JWT `scope`/`scp`, certificate or `x-scopes`) that may act on any session.
    pub admin_scope: String,
    pub jwt: JwtSettings,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthModeName::None,
            admin_scope: "sessions:admin".into(),
            jwt: JwtSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    /// HS256 shared secret (prefer `hs256_secret_file`).
    pub hs256_secret: Option<String>,
    pub hs256_secret_file: Option<PathBuf>,
    /// Directory of PEM public keys named `<kid>.pem` (RS256, ES256 or EdDSA).
    pub public_keys_dir: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Allowed clock skew for `exp`/`nbf`.
    pub leeway_secs: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            hs256_secret_file: None,
            public_keys_dir: None,
            issuer: None,
            audience: None,
            leeway_secs: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// CA that signs client certificates (mTLS); required by `mtls-trusted-header`.
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for new contents (new connections then get
    /// the new certificate); 0 = only on SIGHUP.
    pub reload_interval_ms: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            reload_interval_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Sustained requests per second per user; 0 turns the limit off.
    pub per_second: f64,
    /// Requests a user may burst above the sustained rate.
    pub burst: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address of the Prometheus `/metrics` endpoint; unset turns it off.
    pub listen: Option<SocketAddr>,
}

/// `pretty` (development) or `json` (production).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive (`RUST_LOG`).
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionRules {
    /// Longest JSON encoding of `flags` or `relationships`.
    pub max_json_bytes: usize,
    /// Deepest nesting of `flags` or `relationships` (prost refuses about 33).
    pub max_json_depth: usize,
    pub request_id_ttl_secs: u64,
    pub watch_poll_interval_ms: u64,
    pub renormalize_batch: u64,
    pub renormalize_sweep_secs: u64,
    /// Most writes without an expected version of one session written as one
    /// statement (1: each alone).
    pub max_folded_writes: usize,
}

impl Default for SessionRules {
    fn default() -> Self {
        Self {
            // The limits' defaults are the domain's own.
            max_json_bytes: JsonLimits::default().max_bytes,
            max_json_depth: JsonLimits::default().max_depth,
            request_id_ttl_secs: 24 * 3600,
            watch_poll_interval_ms: 1_000,
            renormalize_batch: 100,
            renormalize_sweep_secs: 60,
            max_folded_writes: 64,
        }
    }
}

/// A setting that is wrong, named by its key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl Settings {
    /// Defaults, then the file (by extension: `.yaml`/`.yml` or TOML), then the environment.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
            figment = if yaml {
                figment.merge(Yaml::file_exact(path))
            } else {
                figment.merge(Toml::file_exact(path))
            };
        }
        figment
            .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database.url".into()))
            .merge(Env::raw().only(&["REDIS_URL"]).map(|_| "redis.url".into()))
            .merge(Env::raw().only(&["RUST_LOG"]).map(|_| "log.filter".into()))
            .merge(Env::prefixed("SESSION__").split("__"))
    }

    /// Extracts and validates.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from the standard layers.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment(file))
    }

    /// Checks what types cannot: ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let db = &self.database.url;
        if !(db.starts_with("sqlite:") || db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            return Err(invalid(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if self.sessions.max_json_depth == 0 || self.sessions.max_json_depth > 30 {
            return Err(invalid("sessions.max_json_depth", "must be between 1 and 30"));
        }
        if self.server.concurrency_limit == 0 {
            return Err(invalid("server.concurrency_limit", "must be at least 1"));
        }
        if let Some(bad) = self.server.cors_allowed_origins.iter().find(|o| !valid_origin(o)) {
            return Err(invalid(
                "server.cors_allowed_origins",
                format!("{bad:?} is not an origin: scheme://host[:port], no path, no wildcard"),
            ));
        }
        if !self.server.cors_allowed_origins.is_empty() && !self.server.grpc_web {
            return Err(invalid(
                "server.cors_allowed_origins",
                "only applies with server.grpc_web = true",
            ));
        }
        if self.server.request_timeout_ms == 0 {
            return Err(invalid("server.request_timeout_ms", "must be at least 1"));
        }
        if !(self.rate_limit.per_second >= 0.0 && self.rate_limit.per_second.is_finite()) {
            return Err(invalid(
                "rate_limit.per_second",
                "must be a finite number, 0 or more",
            ));
        }
        if let Some(url) = &self.redis.url {
            crate::cache::layout::parse(url).map_err(|why| invalid("redis.url", why))?;
        }
        if self.redis.key_prefix.contains(['{', '}']) {
            return Err(invalid(
                "redis.key_prefix",
                "must not contain { or } (on a Cluster the hash tag is the session's bucket)",
            ));
        }
        self.validate_auth()
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let tls = &self.tls;
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(invalid(
                "tls.cert_file",
                "tls.cert_file and tls.key_file go together",
            ));
        }
        if tls.client_ca_file.is_some() && tls.cert_file.is_none() {
            return Err(invalid(
                "tls.client_ca_file",
                "needs tls.cert_file and tls.key_file",
            ));
        }
        match self.auth.mode {
            AuthModeName::None => {}
            AuthModeName::Jwt => {
                let jwt = &self.auth.jwt;
                let keys = [
                    jwt.hs256_secret.is_some(),
                    jwt.hs256_secret_file.is_some(),
                    jwt.public_keys_dir.is_some(),
                ];
                if !keys.contains(&true) {
                    return Err(invalid(
                        "auth.jwt",
                        "jwt mode needs hs256_secret, hs256_secret_file or public_keys_dir",
                    ));
                }
            }
            AuthModeName::MtlsTrustedHeader => {
                if tls.client_ca_file.is_none() {
                    return Err(invalid(
                        "tls.client_ca_file",
                        "mtls-trusted-header mode needs a client CA",
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.server.request_timeout_ms)
    }

    /// A copy safe to print: passwords in URLs and secrets masked.
    pub fn redacted(&self) -> Self {
        let mut s = self.clone();
        s.database.url = redact_url(&s.database.url);
        s.redis.url = s.redis.url.as_deref().map(redact_url);
        if s.auth.jwt.hs256_secret.is_some() {
            s.auth.jwt.hs256_secret = Some("<redacted>".into());
        }
        s
    }
}

/// Checks an allow-list entry: an origin is `scheme://host[:port]`, no path, no `*`.
fn valid_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '*', ' '])
        && HeaderValue::from_str(origin).is_ok()
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
