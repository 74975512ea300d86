//! Idempotency records (AIP-155): (caller, request_id) → the write's recorded result.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveIden)]
enum RequestIds {
    Table,
    UserId,
    RequestId,
    SessionId,
    Action,
    Version,
    Snapshot,
    CreatedAt,
}

const CREATED_AT_INDEX: &str = "idx_request_ids_created_at";

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RequestIds::Table)
                    .if_not_exists()
                    .col(big_integer(RequestIds::UserId))
                    .col(string_len(RequestIds::RequestId, 128))
                    .col(big_integer(RequestIds::SessionId))
                    .col(string_len(RequestIds::Action, 32))
                    .col(big_integer(RequestIds::Version))
                    .col(json_binary_null(RequestIds::Snapshot))
                    .col(timestamp_with_time_zone(RequestIds::CreatedAt))
                    .primary_key(Index::create().col(RequestIds::UserId).col(RequestIds::RequestId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(CREATED_AT_INDEX)
                    .table(RequestIds::Table)
                    .col(RequestIds::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RequestIds::Table).to_owned())
            .await
    }
}
