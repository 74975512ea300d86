//! The audit trail, and the indexes that listing sessions and events need.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveIden)]
enum SessionEvents {
    Table,
    Id,
    SessionId,
    Version,
    Action,
    EdgeId,
    NodeId,
    Diff,
    CreatedAt,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (name, table, columns, unique)
const INDEXES: [(&str, &str, &[&str], bool); 4] = [
    (
        "idx_game_sessions_user_id",
        "game_sessions",
        &["user_id", "id"],
        false,
    ),
    (
        "idx_game_sessions_world_id",
        "game_sessions",
        &["world_id", "id"],
        false,
    ),
    (
        "idx_session_events_session_id",
        "session_events",
        &["session_id", "id"],
        false,
    ),
    // One event per version of a session: a duplicate version cannot be recorded.
    (
        "idx_session_events_session_version",
        "session_events",
        &["session_id", "version"],
        true,
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SessionEvents::Table)
                    .if_not_exists()
                    .col(big_pk_auto(SessionEvents::Id))
                    .col(big_integer(SessionEvents::SessionId))
                    .col(big_integer(SessionEvents::Version))
                    .col(string_len(SessionEvents::Action, 32))
                    .col(big_integer_null(SessionEvents::EdgeId))
                    .col(big_integer_null(SessionEvents::NodeId))
                    .col(json_binary(SessionEvents::Diff))
                    .col(timestamp_with_time_zone(SessionEvents::CreatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, table, columns, unique) in INDEXES {
            let mut index = Index::create();
            index.name(name).table(Alias::new(table)).if_not_exists();
            for column in columns {
                index.col(Alias::new(*column));
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _, _) in INDEXES {
            manager
                .drop_index(Index::drop().name(name).table(Alias::new(table)).to_owned())
                .await?;
        }
        manager
            .drop_table(Table::drop().table(SessionEvents::Table).to_owned())
            .await?;
        Ok(())
    }
}
