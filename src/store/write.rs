//! Versioned writes. The version check is always the one conditional statement
//! `UPDATE game_sessions SET …, version = version + 1 WHERE id = ? [AND user_id = ?]
//! AND version = ? RETURNING *`; zero rows means one read to tell NOT_FOUND from
//! a conflict, and that row goes back to the caller.

use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr};
use serde_json::Value;

use super::{
    Owner, Store, StoreError,
    convert::session_from,
    entity::session::{Column, Entity},
    job::{Job, Link},
    pg_write,
    requests::{RequestKey, WriteMeta},
    sessions::{conflict_or_missing, owned},
    world::rules_in,
};
use crate::domain::{DomainError, Planned, Session, WorldRules};

/// One guarded write of [`Store::cas_batch`].
#[derive(Debug)]
pub struct Cas<'a> {
    pub owner: Owner,
    /// The session the write was computed from; the guard is its version.
    pub base: &'a Session,
    pub planned: Planned,
    pub meta: WriteMeta<'a>,
}

/// The result of a locked write.
#[derive(Debug)]
pub struct Written<S = Session> {
    pub session: S,
    /// False when the plan changed nothing (no new version).
    pub changed: bool,
}

impl Store {
    /// Applies `planned` if the session is still at `base.version` (compare-and-set).
    /// On PostgreSQL it joins the group-commit queue: writes that arrive together
    /// share one statement, each still getting its own answer.
    #[tracing::instrument(name = "db.compare_and_set", level = "debug", skip_all, fields(db.system = self.system(), session_id = base.id, version = base.version))]
    pub async fn cas(
        &self,
        owner: Owner,
        base: &Session,
        planned: Planned,
        meta: WriteMeta<'_>,
    ) -> Result<Session, StoreError> {
        let job = self.job(owner, base, planned, meta);
        Ok(self.write_job(owner, job).await?.next)
    }

    /// Several writes of one session, each planned on the one before (`links`, each
    /// at its own version: `base.version + 1`, `+ 2`, …), written as one: one guarded
    /// write of the row from `base` to the last state, and every link's own event and
    /// idempotency record. What a hot session's writers queued while a statement was
    /// in flight costs one statement, not one each. Returns each link's session;
    /// a conflict means none was written.
    #[tracing::instrument(name = "db.compare_and_set_chain", level = "debug", skip_all, fields(db.system = self.system(), session_id = base.id, version = base.version, links = links.len()))]
    pub async fn cas_chain(
        &self,
        owner: Owner,
        base: &Session,
        links: Vec<Link<'_>>,
    ) -> Result<Vec<Session>, StoreError> {
        if links.is_empty() {
            return Ok(Vec::new());
        }
        let job = Job::chain(owner, base, links, self.max_events);
        let job = self.write_job(owner, job).await?;
        let mut written: Vec<Session> = job.earlier.into_iter().map(|s| s.session).collect();
        written.push(job.next);
        Ok(written)
    }

    /// Writes `job` (through the group-commit queue on PostgreSQL); a failed guard
    /// is the conflict (with the current session) or NOT_FOUND.
    async fn write_job(&self, owner: Owner, job: Job) -> Result<Job, StoreError> {
        let id = job.next.id;
        if let Some(batcher) = &self.batcher {
            return match batcher.write(job).await? {
                Some(written) => Ok(written),
                None => Err(conflict_or_missing(&self.writer, id, owner).await),
            };
        }
        let txn = self.begin_write().await?;
        let Some(written) = self.sqlite_write(&txn, job).await? else {
            return Err(conflict_or_missing(&txn, id, owner).await);
        };
        txn.commit().await?;
        Ok(written)
    }

    /// Several guarded writes at once, each answered exactly as it would be alone: on
    /// PostgreSQL in one statement (what the group-commit queue sends), on SQLite (or
    /// when two writes name one session) one after another.
    pub async fn cas_batch(&self, writes: Vec<Cas<'_>>) -> Vec<Result<Session, StoreError>> {
        let mut ids: Vec<i64> = writes.iter().map(|w| w.base.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if !self.is_postgres() || ids.len() < writes.len() {
            let mut out = Vec::with_capacity(writes.len());
            for w in writes {
                out.push(self.cas(w.owner, w.base, w.planned, w.meta).await);
            }
            return out;
        }
        let guards: Vec<(i64, Owner)> = writes.iter().map(|w| (w.base.id, w.owner)).collect();
        let jobs = writes
            .into_iter()
            .map(|w| self.job(w.owner, w.base, w.planned, w.meta))
            .collect();
        let outcomes = pg_write::write_all(&self.writer, jobs).await;
        let mut out = Vec::with_capacity(outcomes.len());
        for ((id, owner), outcome) in guards.into_iter().zip(outcomes) {
            out.push(match outcome {
                Ok(Some(written)) => Ok(written.next),
                Ok(None) => Err(conflict_or_missing(&self.writer, id, owner).await),
                Err(e) => Err(e),
            });
        }
        out
    }

    /// The PostgreSQL write of `planned` over `base`: the next state at its new version.
    fn job(&self, owner: Owner, base: &Session, planned: Planned, meta: WriteMeta<'_>) -> Job {
        let next = Session {
            version: base.version + 1,
            updated_at: Self::now(),
            ..planned.next
        };
        Job::new(owner, base, next, planned.rules_version, meta, self.max_events)
    }

    /// Reads the session under a row lock (PostgreSQL `FOR UPDATE`; on SQLite the
    /// single writer connection serializes), lets `plan` compute the next state from
    /// it, the rules version it was normalized with and the world's rules, and writes it. Concurrent writers queue instead of
    /// conflicting, so this never fails with a conflict.
    #[tracing::instrument(name = "db.locked_write", level = "debug", skip_all, fields(db.system = self.system(), session_id = id))]
    pub async fn locked<F>(
        &self,
        id: i64,
        owner: Owner,
        meta: WriteMeta<'_>,
        plan: F,
    ) -> Result<Written, StoreError>
    where
        F: FnOnce(&Session, i64, &WorldRules) -> Result<Option<Planned>, DomainError>,
    {
        let txn = self.begin_write().await?;
        let mut select = owned(Entity::find_by_id(id), owner);
        if self.is_postgres() {
            select = select.lock_exclusive();
        }
        let row = select.one(&txn).await?.ok_or(StoreError::NotFound)?;
        let stored_rules = row.rules_version;
        let current = session_from(row)?;
        let rules = rules_in(&txn, current.world_id).await?;
        let Some(planned) = plan(&current, stored_rules, &rules)? else {
            return Ok(Written {
                session: current,
                changed: false,
            });
        };
        let job = self.job(owner, &current, planned, meta);
        let written = if self.is_postgres() {
            pg_write::write_all(&txn, vec![job])
                .await
                .pop()
                .transpose()?
                .flatten()
        } else {
            self.sqlite_write(&txn, job).await?
        }
        .map(|job| job.next);
        let updated =
            written.ok_or_else(|| StoreError::Corrupt("locked row changed under its lock".into()))?;
        txn.commit().await?;
        Ok(Written {
            session: updated,
            changed: true,
        })
    }

    /// Deletes a session (if still at `expected`) and its events. Returns the deleted row.
    #[tracing::instrument(name = "db.delete", level = "debug", skip_all, fields(db.system = self.system(), session_id = id))]
    pub async fn delete(
        &self,
        id: i64,
        owner: Owner,
        expected: Option<i64>,
        request: Option<RequestKey<'_>>,
    ) -> Result<Session, StoreError> {
        let txn = self.begin_write().await?;
        let mut delete = Entity::delete_many().filter(Column::Id.eq(id));
        if let Owner::User(user) = owner {
            delete = delete.filter(Column::UserId.eq(user));
        }
        if let Some(v) = expected {
            delete = delete.filter(Column::Version.eq(v));
        }
        let deleted = delete.exec_with_returning(&txn).await?.into_iter().next();
        let Some(row) = deleted else {
            return Err(conflict_or_missing(&txn, id, owner).await);
        };
        let deleted = session_from(row)?;
        self.delete_events(&txn, id).await?;
        if let Some(key) = request {
            let record = (key.user_id, key.request_id.as_str());
            self.insert_request(&txn, record, &deleted, "delete", None, Self::now())
                .await?;
        }
        txn.commit().await?;
        Ok(deleted)
    }

    /// The SQLite write of `job`: the compare-and-set, then (if its guard held) the
    /// events, the events past the cap and the idempotency records (one each for the
    /// job and its earlier links), in `txn`. The job back with the row as written;
    /// `None` when no row matched.
    async fn sqlite_write(&self, txn: &DatabaseTransaction, mut job: Job) -> Result<Option<Job>, StoreError> {
        let next = &job.next;
        let mut update = Entity::update_many()
            .col_expr(Column::Version, Expr::value(next.version))
            .col_expr(Column::UpdatedAt, Expr::value(next.updated_at))
            .col_expr(Column::RulesVersion, Expr::value(job.rules_version));
        // Only the columns that changed are sent: large JSON is not rewritten for nothing.
        let changed = job.changed;
        if changed.current_node_id {
            update = update.col_expr(Column::CurrentNodeId, Expr::value(next.current_node_id));
        }
        if changed.world_time {
            update = update.col_expr(Column::WorldTime, Expr::value(next.world_time));
        }
        if changed.flags {
            update = update.col_expr(Column::Flags, Expr::value(Value::Object(next.flags.clone())));
        }
        if changed.relationships {
            let rel = Value::Object(next.relationships.clone());
            update = update.col_expr(Column::Relationships, Expr::value(rel));
        }
        update = update
            .filter(Column::Id.eq(next.id))
            .filter(Column::Version.eq(job.expected));
        if let Owner::User(user) = job.owner {
            update = update.filter(Column::UserId.eq(user));
        }
        let Some(row) = update.exec_with_returning(txn).await?.into_iter().next() else {
            return Ok(None);
        };
        let updated = session_from(row)?;
        for step in &mut job.earlier {
            let s = &step.session;
            let diff = std::mem::take(&mut step.diff);
            self.insert_event(txn, s, step.action, (step.edge_id, step.node_id), diff)
                .await?;
            if let Some((user, request_id)) = &step.request {
                self.insert_request(txn, (*user, request_id), s, step.action, Some(s), s.updated_at)
                    .await?;
            }
        }
        let diff = std::mem::take(&mut job.diff);
        self.insert_event(txn, &updated, job.action, (job.edge_id, job.node_id), diff)
            .await?;
        if let Some((user, request_id)) = &job.request {
            let at = updated.updated_at;
            self.insert_request(txn, (*user, request_id), &updated, job.action, Some(&updated), at)
                .await?;
        }
        job.next = updated;
        Ok(Some(job))
    }
}
