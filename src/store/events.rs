//! The audit trail: one event per version, the newest `max_events` kept per session
//! (older ones pruned a range at a time, see [`cut`]).

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
use serde_json::Value;

use super::{
    Owner, Store, StoreError,
    convert::event_from,
    entity::event::{ActiveModel, Column, Entity},
    job::cut,
    sessions::find,
};
use crate::domain::{JsonMap, Session, SessionEvent};

impl Store {
    /// Records the event that produced `session.version`, pruning the oldest beyond the cap.
    pub(super) async fn insert_event<C: ConnectionTrait>(
        &self,
        db: &C,
        session: &Session,
        action: &str,
        (edge_id, node_id): (Option<i64>, Option<i64>),
        diff: JsonMap,
    ) -> Result<i64, StoreError> {
        let row = ActiveModel {
            id: sea_orm::NotSet,
            session_id: Set(session.id),
            version: Set(session.version),
            action: Set(action.to_owned()),
            edge_id: Set(edge_id),
            node_id: Set(node_id),
            diff: Set(Value::Object(diff)),
            created_at: Set(session.updated_at),
        };
        let id = Entity::insert(row).exec(db).await?.last_insert_id;
        if let Some(cut) = cut(session.version - 1, session.version, self.max_events) {
            Entity::delete_many()
                .filter(Column::SessionId.eq(session.id))
                .filter(Column::Version.lte(cut))
                .exec(db)
                .await?;
        }
        Ok(id)
    }

    /// Deletes every event of a deleted session.
    pub(super) async fn delete_events<C: ConnectionTrait>(
        &self,
        db: &C,
        session_id: i64,
    ) -> Result<(), StoreError> {
        Entity::delete_many()
            .filter(Column::SessionId.eq(session_id))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Up to `limit` events of a session `owner` may see, oldest first, after `after_id`.
    /// `None` if the session does not exist for `owner`.
    #[tracing::instrument(name = "db.events", level = "debug", skip_all, fields(db.system = self.system(), session_id = session_id))]
    pub async fn events(
        &self,
        session_id: i64,
        owner: Owner,
        after_id: Option<i64>,
        limit: u64,
    ) -> Result<Option<Vec<SessionEvent>>, StoreError> {
        let Some(session) = find(&self.reader, session_id, owner).await? else {
            return Ok(None);
        };
        // The newest `max_events`: older ones may still be stored until the next prune.
        let mut query = Entity::find()
            .filter(Column::SessionId.eq(session_id))
            .filter(Column::Version.gt(session.version - self.max_events));
        if let Some(after) = after_id {
            query = query.filter(Column::Id.gt(after));
        }
        let rows = query
            .order_by_asc(Column::Id)
            .limit(limit)
            .all(&self.reader)
            .await?;
        rows.into_iter()
            .map(event_from)
            .collect::<Result<_, _>>()
            .map(Some)
    }
}
