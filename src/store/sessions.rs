//! Reading, listing and creating sessions.

use chrono::Utc;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};

use super::{
    Owner, Store, StoreError,
    convert::{session_from, session_row},
    entity::session::{Column, Entity},
    requests::RequestKey,
};
use crate::domain::{Session, diff};

/// Restricts a query to the sessions `owner` may see.
pub(super) fn owned(select: Select<Entity>, owner: Owner) -> Select<Entity> {
    match owner {
        Owner::User(user) => select.filter(Column::UserId.eq(user)),
        Owner::Any => select,
    }
}

/// One session by id, if `owner` may see it.
pub(super) async fn find<C: ConnectionTrait>(
    db: &C,
    id: i64,
    owner: Owner,
) -> Result<Option<Session>, StoreError> {
    owned(Entity::find_by_id(id), owner)
        .one(db)
        .await?
        .map(session_from)
        .transpose()
}

/// After a guard matched no row: the session as it is now (a conflict), or NOT_FOUND.
pub(super) async fn conflict_or_missing<C: ConnectionTrait>(db: &C, id: i64, owner: Owner) -> StoreError {
    match find(db, id, owner).await {
        Ok(Some(current)) => StoreError::Conflict(Box::new(current)),
        Ok(None) => StoreError::NotFound,
        Err(e) => e,
    }
}

impl Store {
    /// One session, if it exists and `owner` may see it.
    #[tracing::instrument(name = "db.get", level = "debug", skip_all, fields(db.system = self.system(), session_id = id))]
    pub async fn get(&self, id: i64, owner: Owner) -> Result<Option<Session>, StoreError> {
        find(&self.reader, id, owner).await
    }

    /// Up to `limit` sessions of `owner`, newest first, older than `before_id`.
    #[tracing::instrument(name = "db.list", level = "debug", skip_all, fields(db.system = self.system()))]
    pub async fn list(
        &self,
        owner: Owner,
        world_id: Option<i64>,
        before_id: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Session>, StoreError> {
        let mut query = owned(Entity::find(), owner);
        if let Some(world) = world_id {
            query = query.filter(Column::WorldId.eq(world));
        }
        if let Some(before) = before_id {
            query = query.filter(Column::Id.lt(before));
        }
        query
            .order_by_desc(Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await?
            .into_iter()
            .map(session_from)
            .collect()
    }

    /// Inserts a session at version 1 with its `session_created` event.
    #[tracing::instrument(name = "db.create", level = "debug", skip_all, fields(db.system = self.system()))]
    pub async fn create(
        &self,
        new: &Session,
        rules_version: i64,
        request: Option<RequestKey<'_>>,
    ) -> Result<Session, StoreError> {
        let txn = self.begin_write().await?;
        let row = Entity::insert(session_row(new, rules_version))
            .exec_with_returning(&txn)
            .await?;
        let created = session_from(row)?;
        let event = self
            .insert_event(
                &txn,
                &created,
                "session_created",
                (None, None),
                diff(None, &created),
            )
            .await?;
        if let Some(key) = request {
            let record = (key.user_id, key.request_id.as_str());
            let at = created.updated_at;
            self.insert_request(&txn, record, &created, "create", Some(&created), at)
                .await?;
        }
        txn.commit().await?;
        tracing::debug!(session_id = created.id, event_id = event, "session created");
        Ok(created)
    }

    /// The time writes stamp on rows, in microseconds as PostgreSQL keeps it, so
    /// what a write returns equals what a later read (or a replay) returns.
    pub(crate) fn now() -> chrono::DateTime<Utc> {
        use chrono::SubsecRound;
        Utc::now().trunc_subsecs(6)
    }
}
