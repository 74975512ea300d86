//! Identity: who is calling, established before any handler runs, plus the
//! per-user rate limit (which needs to know who is calling).
//!
//! Modes (`auth.mode`):
//! - `jwt`: `authorization: Bearer <token>`, verified (see [`jwt`]); `sub` is the user.
//! - `mtls-trusted-header`: callers are services with a client certificate signed by
//!   the configured CA (checked by TLS); they act for the user named in `x-user-id`.
//! - `none`: development only; the unverified `x-user-id` is trusted as sent.
//!
//! The admin scope comes from the token's `scope`/`scp`, the certificate's subject
//! OU values, or (in `none` mode) the `x-scopes` metadata.

pub mod jwt;
mod mtls;

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic::{Request, Status, service::Interceptor};

use super::status::{exhausted, unauthenticated, unauthenticated_saying};
use crate::{
    config::{AuthModeName, Settings},
    service::Caller,
    wire::status::reason,
};

pub use jwt::JwtVerifier;

/// How callers prove who they are.
#[derive(Debug)]
pub enum AuthMode {
    None,
    Jwt(JwtVerifier),
    MtlsTrustedHeader,
}

/// Why auth could not be set up from the settings.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth.jwt: {0}")]
    Jwt(String),
}

struct Config {
    mode: AuthMode,
    admin_scope: String,
    limiter: Option<DefaultKeyedRateLimiter<i64>>,
}

/// A tonic interceptor that puts the [`Caller`] in the request extensions.
#[derive(Clone)]
pub struct Authenticator {
    config: Arc<Config>,
}

impl Authenticator {
    /// From the settings: loads keys, builds the rate limiter.
    pub fn from_settings(s: &Settings) -> Result<Self, AuthSetupError> {
        let mode = match s.auth.mode {
            AuthModeName::None => AuthMode::None,
            AuthModeName::Jwt => AuthMode::Jwt(JwtVerifier::from_settings(&s.auth.jwt)?),
            AuthModeName::MtlsTrustedHeader => AuthMode::MtlsTrustedHeader,
        };
        let limiter = (s.rate_limit.per_second > 0.0).then(|| {
            let period = Duration::from_secs_f64(1.0 / s.rate_limit.per_second);
            let burst = NonZeroU32::new(s.rate_limit.burst.max(1)).expect("max(1) is non-zero");
            let quota = Quota::with_period(period)
                .expect("a positive rate has a period")
                .allow_burst(burst);
            RateLimiter::keyed(quota)
        });
        Ok(Self {
            config: Arc::new(Config {
                mode,
                admin_scope: s.auth.admin_scope.clone(),
                limiter,
            }),
        })
    }

    fn identify(&self, req: &Request<()>) -> Result<Caller, Status> {
        let admin_scope = &self.config.admin_scope;
        match &self.config.mode {
            AuthMode::None => {
                // Nothing is secret in this mode: say what to send.
                let user_id = header_user(req)
                    .ok()
                    .flatten()
                    .ok_or_else(|| unauthenticated_saying(NONE_MODE_HINT))?;
                let scopes = req
                    .metadata()
                    .get("x-scopes")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                Ok(Caller {
                    user_id,
                    admin: has_scope(scopes, admin_scope),
                })
            }
            AuthMode::Jwt(verifier) => {
                let token = bearer(req).ok_or_else(unauthenticated)?;
                let claims = verifier.verify(token).map_err(|why| {
                    tracing::debug!(%why, "token refused");
                    unauthenticated()
                })?;
                Ok(Caller {
                    user_id: claims.user_id,
                    admin: claims.has_scope(admin_scope),
                })
            }
            AuthMode::MtlsTrustedHeader => {
                let certs = req.peer_certs().ok_or_else(unauthenticated)?;
                let leaf = certs.first().ok_or_else(unauthenticated)?;
                let admin = mtls::scopes(leaf).iter().any(|s| s == admin_scope);
                match header_user(req)? {
                    Some(user_id) => Ok(Caller { user_id, admin }),
                    // An admin service may act without naming a user (it cannot
                    // create sessions then: they need an owner).
                    None if admin => Ok(Caller {
                        user_id: Caller::NO_USER,
                        admin,
                    }),
                    None => Err(unauthenticated()),
                }
            }
        }
    }

    fn check_rate(&self, caller: &Caller) -> Result<(), Status> {
        let Some(limiter) = &self.config.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&caller.user_id)
            .map_err(|_| exhausted("rate limit exceeded; slow down", reason::RATE_LIMITED))
    }
}

/// What a caller is told in `auth.mode = "none"`; the verified modes answer only
/// "missing or invalid credentials", giving nothing away.
const NONE_MODE_HINT: &str =
    "missing or invalid credentials: in auth mode \"none\" send metadata x-user-id: <positive integer>";

/// `x-user-id`: `Ok(None)` when absent; a value that is not a positive integer is
/// refused, never taken as absent (0 is the service acting for no user).
fn header_user(req: &Request<()>) -> Result<Option<i64>, Status> {
    let Some(value) = req.metadata().get("x-user-id") else {
        return Ok(None);
    };
    let id = value.to_str().ok().and_then(|v| v.trim().parse::<i64>().ok());
    match id {
        Some(id) if id > 0 => Ok(Some(id)),
        _ => Err(unauthenticated()),
    }
}

fn bearer(req: &Request<()>) -> Option<&str> {
    let value = req.metadata().get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// True if the space-separated `scopes` hold `wanted` (OAuth 2 `scope` format).
pub(crate) fn has_scope(scopes: &str, wanted: &str) -> bool {
    scopes.split_whitespace().any(|s| s == wanted)
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.identify(&req)?;
        self.check_rate(&caller)?;
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// The caller the interceptor established.
pub(crate) fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .copied()
        .ok_or_else(unauthenticated)
}
