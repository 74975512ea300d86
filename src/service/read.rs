//! GetSession, ListSessions, ListSessionEvents.

use std::sync::Arc;

use super::{Caller, ServiceError, Sessions, ended};
use crate::{
    cache::Lookup,
    domain::{EventsQuery, ListQuery, PageToken, Session, SessionEvent, SessionId, Version},
};

/// A copy `wanted` accepts; a copy of another user's session is NOT_FOUND without
/// asking the database (owners never change).
fn visible(
    caller: &Caller,
    copy: Arc<Session>,
    wanted: impl Fn(&Session) -> bool,
) -> Result<Option<Arc<Session>>, ServiceError> {
    if !caller.may_see(copy.user_id) {
        return Err(ServiceError::NotFound);
    }
    Ok(wanted(&copy).then_some(copy))
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Empty on the last page.
    pub next_page_token: String,
}

fn page<T>(mut items: Vec<T>, size: u64, kind: &str, id: impl Fn(&T) -> i64) -> Page<T> {
    let more = items.len() as u64 > size;
    items.truncate(size as usize);
    let next_page_token = match items.last() {
        Some(last) if more => PageToken::encode(id(last), kind),
        _ => String::new(),
    };
    Page {
        items,
        next_page_token,
    }
}

impl Sessions {
    /// GetSession. Strong without `min_version`: the shared cache if warm, else the
    /// database (then filling the cache), never older than an acknowledged write.
    /// With it: this replica's own copy when it is at least that version, else the
    /// strong path; a session not yet at `min_version` is FAILED_PRECONDITION.
    #[tracing::instrument(
        skip(self, caller),
        fields(session_id = id.get(), user_id = caller.user_id, min_version = min_version.map(|v| v.get()), outcome)
    )]
    pub async fn get(
        &self,
        caller: &Caller,
        id: SessionId,
        min_version: Option<Version>,
    ) -> Result<Arc<Session>, ServiceError> {
        let result = match min_version {
            None => self.cached_or_read(caller, id.get(), |_| true).await,
            Some(min) => self.at_least(caller, id.get(), min.get()).await.and_then(|s| {
                if s.version >= min.get() {
                    Ok(s)
                } else {
                    Err(ServiceError::Precondition {
                        reason: "VERSION_NOT_REACHED",
                        message: format!(
                            "session is at version {}, not yet at min_version {}",
                            s.version,
                            min.get()
                        ),
                    })
                }
            }),
        };
        ended(result)
    }

    /// The session at `min` or newer if it has reached it (else the newest there is):
    /// this replica's copy when fresh enough, else the cache, else the database.
    pub(super) async fn at_least(
        &self,
        caller: &Caller,
        id: i64,
        min: i64,
    ) -> Result<Arc<Session>, ServiceError> {
        self.copy_or_read(caller, id, |s| s.version >= min).await
    }

    /// The first that `wanted` accepts: this replica's own copy, the shared cache's,
    /// else the database row (which then fills the cache).
    pub(super) async fn copy_or_read(
        &self,
        caller: &Caller,
        id: i64,
        wanted: impl Fn(&Session) -> bool,
    ) -> Result<Arc<Session>, ServiceError> {
        match self.local_copy(caller, id, &wanted)? {
            Some(copy) => Ok(copy),
            None => self.cached_or_read(caller, id, wanted).await,
        }
    }

    /// This replica's own copy if `wanted` accepts it (see [`crate::cache::SessionCache::recent`]);
    /// a copy of another user's session is NOT_FOUND, as owners never change.
    fn local_copy(
        &self,
        caller: &Caller,
        id: i64,
        wanted: impl Fn(&Session) -> bool,
    ) -> Result<Option<Arc<Session>>, ServiceError> {
        let Some(copy) = self.inner.cache.recent(id) else {
            return Ok(None);
        };
        let accepted = visible(caller, copy, wanted)?;
        if accepted.is_some() {
            self.inner.metrics.cache_outcome("local");
        }
        Ok(accepted)
    }

    /// The cached session if `fresh_enough` accepts it, else the database row (which
    /// then fills the cache). A cached session of another user, or a tombstone, is
    /// NOT_FOUND without asking the database: owners never change.
    pub(super) async fn cached_or_read(
        &self,
        caller: &Caller,
        id: i64,
        fresh_enough: impl Fn(&Session) -> bool,
    ) -> Result<Arc<Session>, ServiceError> {
        match self.inner.cache.get(id).await {
            Lookup::Hit(s) => match visible(caller, s, fresh_enough)? {
                Some(s) => Ok(s),
                None => self.read_through(caller, id).await,
            },
            Lookup::Deleted => Err(ServiceError::NotFound),
            Lookup::Miss => self.read_through(caller, id).await,
        }
    }

    /// Reads the database and fills the cache (guarded: never over a newer version).
    pub(super) async fn read_through(&self, caller: &Caller, id: i64) -> Result<Arc<Session>, ServiceError> {
        let session = self
            .inner
            .store
            .get(id, caller.owner())
            .await?
            .ok_or(ServiceError::NotFound)?;
        let session = Arc::new(session);
        self.inner.cache.fill(&session).await;
        Ok(session)
    }

    /// ListSessions: the caller's sessions (an admin's: everyone's), newest first.
    #[tracing::instrument(skip(self, caller, query), fields(user_id = caller.user_id, outcome))]
    pub async fn list(&self, caller: &Caller, query: ListQuery) -> Result<Page<Session>, ServiceError> {
        let size = query.page_size.get();
        let items = self
            .inner
            .store
            .list(
                caller.owner(),
                query.world_id,
                query.after.map(|t| t.after_id),
                size + 1,
            )
            .await
            .map_err(ServiceError::from);
        ended(items.map(|items| page(items, size, "sessions", |s| s.id)))
    }

    /// ListSessionEvents: the audit trail, oldest first.
    #[tracing::instrument(
        skip(self, caller, query),
        fields(session_id = query.session_id.get(), user_id = caller.user_id, outcome)
    )]
    pub async fn events(
        &self,
        caller: &Caller,
        query: EventsQuery,
    ) -> Result<Page<SessionEvent>, ServiceError> {
        let size = query.page_size.get();
        let items = self
            .inner
            .store
            .events(
                query.session_id.get(),
                caller.owner(),
                query.after.map(|t| t.after_id),
                size + 1,
            )
            .await
            .map_err(ServiceError::from)
            .and_then(|found| found.ok_or(ServiceError::NotFound));
        ended(items.map(|items| page(items, size, "events", |e| e.id)))
    }
}
