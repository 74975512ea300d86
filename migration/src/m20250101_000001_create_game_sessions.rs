//! The sessions table as the original service had it: no `version` yet.

use sea_orm_migration::{prelude::*, schema::*};

use crate::GameSessions;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(GameSessions::Table)
                    .if_not_exists()
                    .col(big_pk_auto(GameSessions::Id))
                    .col(big_integer(GameSessions::UserId))
                    .col(big_integer(GameSessions::SceneId))
                    .col(big_integer(GameSessions::CurrentNodeId))
                    .col(big_integer_null(GameSessions::WorldId))
                    .col(json_binary(GameSessions::Flags))
                    .col(json_binary(GameSessions::Relationships))
                    .col(double(GameSessions::WorldTime).default(0.0))
                    .col(timestamp_with_time_zone(GameSessions::CreatedAt))
                    .col(timestamp_with_time_zone(GameSessions::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(GameSessions::Table).to_owned())
            .await
    }
}
