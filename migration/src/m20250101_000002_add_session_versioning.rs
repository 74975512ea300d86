//! Adds the optimistic-concurrency `version`; existing sessions start at 1.
//! `down` drops only that column and leaves every session's data intact.

use sea_orm_migration::{prelude::*, schema::*};

use crate::GameSessions;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(GameSessions::Table)
                    .add_column(big_integer(GameSessions::Version).default(1))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(GameSessions::Table)
                    .drop_column(GameSessions::Version)
                    .to_owned(),
            )
            .await
    }
}
