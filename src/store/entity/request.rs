//! `request_ids`: what a write with a request id did, to answer its retries.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "request_ids")]
pub struct Model {
    /// The caller that sent the request: ids are unique per caller.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    pub session_id: i64,
    pub action: String,
    /// The version the write produced (for a delete: the version deleted).
    pub version: i64,
    /// The session as the write left it; absent for a delete.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub snapshot: Option<Json>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
