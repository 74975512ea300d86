//! `world_rules`: one row per world that has its own relationship rules.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "world_rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub world_id: i64,
    /// The domain `WorldRules`, as JSON.
    #[sea_orm(column_type = "JsonBinary")]
    pub rules: Json,
    pub version: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
