//! CreateSession and every versioned write (update, advance, mutate, delete).

use std::sync::Arc;

use super::{Caller, ServiceError, Sessions, ended};
use crate::{
    cache::Published,
    domain::{Change, CreateRequest, RequestId, Session, Write, normalize_relationships, plan},
    store::{RequestKey, RequestRecord, Store, StoreError, WriteMeta, Written},
};

/// The idempotency key of a write: request ids are unique per caller.
fn key_of<'a>(caller: &Caller, request_id: Option<&'a RequestId>) -> Option<RequestKey<'a>> {
    // The soak's proof that its checker can fail (see Cargo.toml): no idempotency.
    if cfg!(feature = "broken-skip-idempotency") {
        return None;
    }
    request_id.map(|request_id| RequestKey {
        user_id: caller.user_id,
        request_id,
    })
}

impl Sessions {
    /// CreateSession: version 1, owned by the caller.
    #[tracing::instrument(skip(self, caller, req), fields(user_id = caller.user_id, session_id, outcome))]
    pub async fn create(&self, caller: &Caller, req: CreateRequest) -> Result<Arc<Session>, ServiceError> {
        ended(self.create_session(caller, req).await)
    }

    async fn create_session(
        &self,
        caller: &Caller,
        req: CreateRequest,
    ) -> Result<Arc<Session>, ServiceError> {
        if caller.user_id == Caller::NO_USER {
            return Err(ServiceError::NoOwner);
        }
        let limits = &self.inner.settings.json_limits;
        let mut session = req.new.to_session(caller.user_id, Store::now());
        let rules = self.inner.store.rules(session.world_id).await?;
        normalize_relationships(&mut session.relationships, &rules)?;
        session.check_limits(limits)?;
        let key = key_of(caller, req.request_id.as_ref());
        let created = match self.inner.store.create(&session, rules.version, key).await {
            Err(StoreError::DuplicateRequest) => {
                let record = self.record(caller, req.request_id.as_ref()).await?;
                return match record {
                    Some(RequestRecord {
                        action,
                        snapshot: Some(s),
                        ..
                    }) if action == "create" => Ok(Arc::new(s)),
                    _ => Err(ServiceError::RequestIdReused),
                };
            }
            other => other?,
        };
        tracing::Span::current().record("session_id", created.id);
        let created = Arc::new(created);
        self.committed(&created).await?;
        Ok(created)
    }

    /// Update, advance, mutate or delete one session. `Ok(None)` only for a delete.
    #[tracing::instrument(
        skip(self, caller, w),
        fields(
            session_id = w.session_id.get(),
            user_id = caller.user_id,
            expected_version = w.expected.map(|v| v.get()),
            action = w.change.action(),
            outcome,
        )
    )]
    pub async fn write(&self, caller: &Caller, w: Write) -> Result<Option<Arc<Session>>, ServiceError> {
        let result = match (&w.change, w.expected) {
            (Change::Delete, _) => self.delete(caller, &w).await.map(|s| (s, true)),
            (_, Some(expected)) => self
                .compare_and_set(caller, &w, expected.get())
                .await
                .map(|(session, changed)| (Some(session), changed)),
            (_, None) => self
                .serialized(caller, &w)
                .await
                .map(|(session, changed)| (Some(session), changed)),
        };
        let result = match result {
            Ok((session, true)) => Ok(session),
            // Nothing to change: the retry of a write that did change something gets that result.
            Ok((session, false)) => match self.recorded(caller, &w).await {
                Ok(Some(recorded)) => Ok(recorded),
                _ => Ok(session),
            },
            // A failure its own earlier attempt could explain (the version moved, the
            // session is gone, the node changed, the key is taken): the recorded
            // result, if this request id has one.
            Err(e) if e.may_be_replay() => match self.recorded(caller, &w).await {
                Ok(recorded) => recorded.ok_or(e),
                Err(lookup) => Err(lookup),
            },
            Err(e) => Err(e),
        };
        if let Err(ServiceError::Conflict { .. }) = &result {
            self.inner.metrics.conflicts.inc();
        }
        ended(result)
    }

    /// With an expected version: compute from the session at that version, then
    /// compare-and-set. Returns the session and whether it changed.
    async fn compare_and_set(
        &self,
        caller: &Caller,
        w: &Write,
        expected: i64,
    ) -> Result<(Arc<Session>, bool), ServiceError> {
        // A version names one state: this replica's copy, or the shared cache's, will
        // do if it is exactly at `expected` (no Redis round trip for the first).
        let id = w.session_id.get();
        let base = self.copy_or_read(caller, id, |s| s.version == expected).await?;
        if base.version != expected {
            return Err(ServiceError::Conflict {
                current: Box::new(Arc::unwrap_or_clone(base)),
                expected,
            });
        }
        let rules = self.inner.store.rules(base.world_id).await?;
        let limits = &self.inner.settings.json_limits;
        let Some(planned) = plan(&base, None, &w.change, &rules, limits)? else {
            return Ok((base, false));
        };
        let meta = self.meta(caller, w);
        match self.inner.store.cas(caller.owner(), &base, planned, meta).await {
            Ok(updated) => {
                let updated = Arc::new(updated);
                self.committed(&updated).await?;
                Ok((updated, true))
            }
            Err(StoreError::Conflict(current)) => Err(ServiceError::Conflict { current, expected }),
            Err(e) => Err(e.into()),
        }
    }

    /// One writer's turn: compare-and-set from the freshest known version. Returns the
    /// session, whether it changed, and whether the commit is still to be announced.
    pub(super) async fn in_turn(
        &self,
        caller: &Caller,
        w: &Write,
    ) -> Result<(Arc<Session>, bool, bool), ServiceError> {
        let id = w.session_id.get();
        // The freshest known version: a stale one only costs a conflict and a retry.
        let mut base = self.copy_or_read(caller, id, |_| true).await?;
        let limits = self.inner.settings.json_limits;
        for _ in 0..super::OPTIMISTIC_ROUNDS {
            let rules = self.inner.store.rules(base.world_id).await?;
            let Some(planned) = plan(&base, None, &w.change, &rules, &limits)? else {
                return Ok((base, false, false));
            };
            match self
                .inner
                .store
                .cas(caller.owner(), &base, planned, self.meta(caller, w))
                .await
            {
                Ok(updated) => {
                    let updated = Arc::new(updated);
                    self.inner.cache.remember(&updated);
                    return Ok((updated, true, true));
                }
                // Another replica wrote meanwhile: go again from its version.
                Err(StoreError::Conflict(current)) => base = Arc::new(*current),
                Err(e) => return Err(e.into()),
            }
        }
        let written = self.locked(caller, w).await?;
        Ok((written.session, written.changed, false))
    }

    /// Reads the row under a lock (queueing behind other writers in the database),
    /// computes, writes. Cannot conflict. Re-normalization uses it directly: it
    /// needs the stored rules version, which only the row has.
    pub(super) async fn locked(
        &self,
        caller: &Caller,
        w: &Write,
    ) -> Result<Written<Arc<Session>>, ServiceError> {
        let limits = self.inner.settings.json_limits;
        let meta = self.meta(caller, w);
        let change = &w.change;
        let written = self
            .inner
            .store
            .locked(
                w.session_id.get(),
                caller.owner(),
                meta,
                |current, stored_rules, rules| plan(current, Some(stored_rules), change, rules, &limits),
            )
            .await?;
        let written = Written {
            session: Arc::new(written.session),
            changed: written.changed,
        };
        if written.changed {
            self.committed(&written.session).await?;
        }
        Ok(written)
    }

    async fn delete(&self, caller: &Caller, w: &Write) -> Result<Option<Arc<Session>>, ServiceError> {
        let key = key_of(caller, w.request_id.as_ref());
        let expected = w.expected.map(|v| v.get());
        let deleted = match self
            .inner
            .store
            .delete(w.session_id.get(), caller.owner(), expected, key)
            .await
        {
            Err(StoreError::Conflict(current)) => {
                let expected = expected.unwrap_or(current.version);
                return Err(ServiceError::Conflict { current, expected });
            }
            other => other?,
        };
        answerable(self.inner.cache.deleted(deleted.id).await)?;
        Ok(None)
    }

    pub(super) fn meta<'a>(&self, caller: &Caller, w: &'a Write) -> WriteMeta<'a> {
        let (edge_id, node_id) = w.change.edge_and_node();
        WriteMeta {
            action: w.change.action(),
            edge_id,
            node_id,
            request: key_of(caller, w.request_id.as_ref()),
        }
    }

    /// The idempotency record of a request id, if any.
    async fn record(
        &self,
        caller: &Caller,
        request_id: Option<&RequestId>,
    ) -> Result<Option<RequestRecord>, ServiceError> {
        let Some(key) = key_of(caller, request_id) else {
            return Ok(None);
        };
        let record = self.inner.store.request_record(key).await?;
        if record.is_some() {
            self.inner.metrics.replays.inc();
        }
        Ok(record)
    }

    /// The recorded answer of this write's request id: `None` if it has no id or no
    /// record, `Some(None)` for a recorded delete. A record of another write is
    /// REQUEST_ID_REUSED.
    async fn recorded(
        &self,
        caller: &Caller,
        w: &Write,
    ) -> Result<Option<Option<Arc<Session>>>, ServiceError> {
        let Some(record) = self.record(caller, w.request_id.as_ref()).await? else {
            return Ok(None);
        };
        if record.session_id != w.session_id.get() || record.action != w.change.action() {
            return Err(ServiceError::RequestIdReused);
        }
        tracing::debug!(version = record.version, "answered from the idempotency record");
        let snapshot = record.snapshot.map(Arc::new);
        if let Some(s) = &snapshot {
            // The first attempt may have committed and then been cancelled before its
            // write-through: this answer acknowledges it, so the cache must not hold
            // anything older (see SessionCache::replayed).
            answerable(self.inner.cache.replayed(s).await)?;
        }
        Ok(Some(snapshot))
    }

    /// After a commit: write through to the cache, then tell watchers everywhere.
    /// UNAVAILABLE if the shared cache did not confirm it (see [`Published`]).
    pub(super) async fn committed(&self, session: &Arc<Session>) -> Result<(), ServiceError> {
        answerable(self.inner.cache.committed(session).await)
    }
}

/// Whether a committed write may be answered: not while other replicas could still
/// read the older state from Redis. Resent with its request id, it is answered from
/// the idempotency record (and written through again).
fn answerable(published: Published) -> Result<(), ServiceError> {
    match published {
        Published::Visible => Ok(()),
        Published::Unconfirmed => Err(ServiceError::Unconfirmed),
    }
}
