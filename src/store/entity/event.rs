//! `session_events`: the audit trail, one row per version.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "session_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub session_id: i64,
    pub version: i64,
    pub action: String,
    pub edge_id: Option<i64>,
    pub node_id: Option<i64>,
    #[sea_orm(column_type = "JsonBinary")]
    pub diff: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
