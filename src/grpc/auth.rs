//! Identity: who is calling, established before any handler runs.
//!
//! `none` mode (local development and the embedded default) trusts the unverified
//! `x-user-id` metadata; `x-scopes` may carry the admin scope.

use std::sync::Arc;

use tonic::{Request, Status, service::Interceptor};

use super::status::unauthenticated;
use crate::service::Caller;

/// How callers prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Unverified `x-user-id` (development only).
    None,
}

#[derive(Debug)]
struct Config {
    mode: AuthMode,
    admin_scope: String,
}

/// A tonic interceptor that puts the [`Caller`] in the request extensions.
#[derive(Clone, Debug)]
pub struct Authenticator {
    config: Arc<Config>,
}

impl Authenticator {
    pub fn new(mode: AuthMode, admin_scope: impl Into<String>) -> Self {
        Self {
            config: Arc::new(Config {
                mode,
                admin_scope: admin_scope.into(),
            }),
        }
    }

    fn header_identity(&self, req: &Request<()>) -> Result<Caller, Status> {
        let user_id = req
            .metadata()
            .get("x-user-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(unauthenticated)?;
        let admin = req
            .metadata()
            .get("x-scopes")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|scopes| has_scope(scopes, &self.config.admin_scope));
        Ok(Caller { user_id, admin })
    }
}

/// True if the space-separated `scopes` hold `wanted` (OAuth 2 `scope` format).
pub(crate) fn has_scope(scopes: &str, wanted: &str) -> bool {
    scopes.split_whitespace().any(|s| s == wanted)
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let caller = match self.config.mode {
            AuthMode::None => self.header_identity(&req)?,
        };
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
