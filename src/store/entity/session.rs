//! `game_sessions`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "game_sessions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    pub scene_id: i64,
    pub current_node_id: i64,
    pub world_id: Option<i64>,
    #[sea_orm(column_type = "JsonBinary")]
    pub flags: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub relationships: Json,
    #[sea_orm(column_type = "Double")]
    pub world_time: f64,
    pub version: i64,
    /// The world-rules version the relationships were normalized with (0: defaults).
    pub rules_version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
