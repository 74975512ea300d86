//! PostgreSQL only: the JSON documents are TOAST-compressed with lz4 instead of pglz.
//!
//! Every write stores an event whose `diff` holds the old and new values of what
//! changed (up to 1 KiB each), so a 1 KiB `flags` write makes a ~2 KiB diff, over
//! the TOAST threshold: pglz compressing it was ~10 % of PostgreSQL's CPU per
//! update (BENCHMARKS.md, round nine); lz4 does the same work in about half the time
//! and decompresses faster for reads. Only values written from now on change;
//! existing ones stay readable as they are. A server built without lz4 keeps pglz
//! (a notice, not an error). SQLite has no TOAST: nothing to do there.

use sea_orm_migration::prelude::*;

/// (table, column) of every JSON document the service writes.
const DOCUMENTS: [(&str, &str); 4] = [
    ("game_sessions", "flags"),
    ("game_sessions", "relationships"),
    ("session_events", "diff"),
    ("request_ids", "snapshot"),
];

#[derive(DeriveMigrationName)]
pub struct Migration;

async fn set_compression(manager: &SchemaManager<'_>, method: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let alters: String = DOCUMENTS
        .iter()
        .map(|(table, column)| {
            format!("EXECUTE 'ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}';\n")
        })
        .collect();
    // EXECUTE, so a server without the method (or without SET COMPRESSION, before
    // PostgreSQL 14) fails at run time, where the handler catches it.
    let sql = format!(
        "DO $$ BEGIN
{alters}EXCEPTION WHEN feature_not_supported OR syntax_error THEN
  RAISE NOTICE 'session-service: % compression unavailable, JSON documents keep the default', '{method}';
END $$"
    );
    manager
        .get_connection()
        .execute_unprepared(&sql)
        .await
        .map(|_| ())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_compression(manager, "lz4").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_compression(manager, "default").await
    }
}
