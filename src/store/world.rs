//! World rules: read, put (versioned), and finding sessions normalized with old rules.

use std::sync::{Arc, LazyLock};

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::{
    Store, StoreError,
    convert::rules_from,
    entity::{session, world},
};
use crate::domain::WorldRules;

/// The rules that apply to sessions of `world_id`: the world's own, else the
/// defaults at version 0. The one way rules are found, inside a transaction or not.
pub(super) async fn rules_in<C: ConnectionTrait>(
    db: &C,
    world_id: Option<i64>,
) -> Result<Arc<WorldRules>, StoreError> {
    /// Sessions of no world all share the built-in rules: built once.
    static NO_WORLD: LazyLock<Arc<WorldRules>> = LazyLock::new(|| Arc::new(WorldRules::defaults(0)));
    let Some(world_id) = world_id else {
        return Ok(NO_WORLD.clone());
    };
    let stored = world::Entity::find_by_id(world_id).one(db).await?;
    let rules = stored.map_or(Ok(WorldRules::defaults(world_id)), rules_from)?;
    Ok(Arc::new(rules))
}

impl Store {
    /// The rules that apply to sessions of `world_id` (the defaults if it has none).
    #[tracing::instrument(name = "db.world_rules", level = "debug", skip_all, fields(db.system = self.system(), world_id = world_id))]
    pub async fn rules(&self, world_id: Option<i64>) -> Result<Arc<WorldRules>, StoreError> {
        rules_in(&self.reader, world_id).await
    }

    /// Stores `rules` as the next version, if the world is at `expected` (0: no rules yet).
    #[tracing::instrument(name = "db.put_world_rules", level = "debug", skip_all, fields(db.system = self.system()))]
    pub async fn put_world_rules(
        &self,
        rules: &WorldRules,
        expected: Option<i64>,
    ) -> Result<WorldRules, StoreError> {
        let txn = self.begin_write().await?;
        let mut select = world::Entity::find_by_id(rules.world_id);
        if self.is_postgres() {
            select = select.lock_exclusive();
        }
        let current = select.one(&txn).await?.map(rules_from).transpose()?;
        let current_version = current.as_ref().map_or(0, |r| r.version);
        if let Some(expected) = expected
            && expected != current_version
        {
            let current = current.unwrap_or_else(|| WorldRules::defaults(rules.world_id));
            return Err(StoreError::RulesConflict(Box::new(current)));
        }
        let json = serde_json::to_value(rules).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let row = world::ActiveModel {
            world_id: Set(rules.world_id),
            rules: Set(json),
            version: Set(current_version + 1),
            updated_at: Set(Self::now()),
        };
        // A first put racing another first put fails on the primary key: retrying
        // reads the winner and answers a conflict when a version was expected.
        let saved = if current.is_some() {
            world::Entity::update(row).exec(&txn).await?
        } else {
            world::Entity::insert(row).exec_with_returning(&txn).await?
        };
        txn.commit().await?;
        rules_from(saved)
    }

    /// Worlds that have their own rules, with their versions.
    pub async fn world_rule_versions(&self) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = world::Entity::find()
            .select_only()
            .column(world::Column::WorldId)
            .column(world::Column::Version)
            .into_tuple()
            .all(&self.reader)
            .await?;
        Ok(rows)
    }

    /// How many sessions of `world_id` are normalized with rules older than `version`.
    pub async fn count_stale(&self, world_id: i64, version: i64) -> Result<u64, StoreError> {
        let n = session::Entity::find()
            .filter(session::Column::WorldId.eq(world_id))
            .filter(session::Column::RulesVersion.lt(version))
            .count(&self.reader)
            .await?;
        Ok(n)
    }

    /// Ids of sessions of `world_id` normalized with rules older than `version`.
    pub async fn stale_sessions(
        &self,
        world_id: i64,
        version: i64,
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<i64>, StoreError> {
        let ids = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .filter(session::Column::WorldId.eq(world_id))
            .filter(session::Column::RulesVersion.lt(version))
            .filter(session::Column::Id.gt(after_id))
            .order_by_asc(session::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&self.reader)
            .await?;
        Ok(ids)
    }
}
