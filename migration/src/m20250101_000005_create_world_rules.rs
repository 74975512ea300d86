//! Per-world relationship rules, and on each session the rules version its
//! relationships were normalized with (what background re-normalization looks for).

use sea_orm_migration::{prelude::*, schema::*};

use crate::GameSessions;

#[derive(DeriveIden)]
enum WorldRules {
    Table,
    WorldId,
    Rules,
    Version,
    UpdatedAt,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WorldRules::Table)
                    .if_not_exists()
                    .col(big_integer(WorldRules::WorldId).primary_key())
                    .col(json_binary(WorldRules::Rules))
                    .col(big_integer(WorldRules::Version))
                    .col(timestamp_with_time_zone(WorldRules::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(GameSessions::Table)
                    .add_column(big_integer(GameSessions::RulesVersion).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(GameSessions::Table)
                    .drop_column(GameSessions::RulesVersion)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(WorldRules::Table).to_owned())
            .await
    }
}
