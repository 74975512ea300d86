//! Schema migrations of session-service, applied in order by `session-service migrate`.
//!
//! Each migration keeps to one change per `ALTER TABLE`: SQLite cannot do more.

pub use sea_orm_migration::prelude::*;

mod m20250101_000001_create_game_sessions;
mod m20250101_000002_add_session_versioning;
mod m20250101_000003_create_session_events;
mod m20250101_000004_create_request_ids;
mod m20250101_000005_create_world_rules;
mod m20261201_000006_lz4_documents;

/// All migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_create_game_sessions::Migration),
            Box::new(m20250101_000002_add_session_versioning::Migration),
            Box::new(m20250101_000003_create_session_events::Migration),
            Box::new(m20250101_000004_create_request_ids::Migration),
            Box::new(m20250101_000005_create_world_rules::Migration),
            Box::new(m20261201_000006_lz4_documents::Migration),
        ]
    }
}

/// Table and column names shared by the migrations.
#[derive(DeriveIden)]
pub(crate) enum GameSessions {
    Table,
    Id,
    UserId,
    SceneId,
    CurrentNodeId,
    WorldId,
    Flags,
    Relationships,
    WorldTime,
    CreatedAt,
    UpdatedAt,
    Version,
    RulesVersion,
}
