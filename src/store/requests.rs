//! Idempotency records (AIP-155): a retried write gets the recorded result back.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use super::{
    Store, StoreError,
    convert::snapshot_from,
    entity::request::{ActiveModel, Column, Entity},
    error::is_unique_violation,
};
use crate::domain::{RequestId, Session};

/// Who sent a write, and its idempotency key.
#[derive(Debug, Clone, Copy)]
pub struct RequestKey<'a> {
    pub user_id: i64,
    pub request_id: &'a RequestId,
}

/// What a recorded write did.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub session_id: i64,
    pub action: String,
    pub version: i64,
    /// The session as the write left it; `None` for a delete.
    pub snapshot: Option<Session>,
}

/// What the event and idempotency record of a write say.
#[derive(Debug, Clone, Copy)]
pub struct WriteMeta<'a> {
    pub action: &'static str,
    pub edge_id: Option<i64>,
    pub node_id: Option<i64>,
    pub request: Option<RequestKey<'a>>,
}

impl Store {
    /// Records a write of `(user, request id)` in its transaction, stamped `at` (the
    /// write's own time). A second write with the same key fails with
    /// `DuplicateRequest` (the unique key serializes racing retries).
    pub(super) async fn insert_request<C: ConnectionTrait>(
        &self,
        db: &C,
        (user_id, request_id): (i64, &str),
        session: &Session,
        action: &str,
        snapshot: Option<&Session>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let snapshot = snapshot
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let row = ActiveModel {
            user_id: Set(user_id),
            request_id: Set(request_id.to_owned()),
            session_id: Set(session.id),
            action: Set(action.to_owned()),
            version: Set(session.version),
            snapshot: Set(snapshot),
            created_at: Set(at),
        };
        match Entity::insert(row).exec_without_returning(db).await {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::DuplicateRequest),
            Err(e) => Err(e.into()),
        }
    }

    /// The record of an earlier write with this key, if it is still kept.
    #[tracing::instrument(name = "db.request_record", level = "debug", skip_all, fields(db.system = self.system()))]
    pub async fn request_record(&self, key: RequestKey<'_>) -> Result<Option<RequestRecord>, StoreError> {
        let row = Entity::find_by_id((key.user_id, key.request_id.as_str().to_owned()))
            .one(&self.reader)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(RequestRecord {
            session_id: row.session_id,
            action: row.action,
            version: row.version,
            snapshot: row.snapshot.map(snapshot_from).transpose()?,
        }))
    }

    /// Forgets records older than `before`; returns how many.
    pub async fn prune_requests(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let res = Entity::delete_many()
            .filter(Column::CreatedAt.lt(before))
            .exec(&self.writer)
            .await?;
        Ok(res.rows_affected)
    }
}
