//! Opening the pools.

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use super::{Store, StoreError, group_commit};

/// What the store needs to know, filled from the configuration
/// ([`crate::app::store_settings`]; the defaults live in [`crate::config`]).
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `sqlite://path?mode=rwc` or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// Events kept per session; older ones are pruned as new ones arrive.
    pub max_events_per_session: i64,
    /// PostgreSQL: group-commit statements in flight at once; each takes every
    /// guarded write queued when it starts (no waiting for company).
    pub write_workers: usize,
    /// PostgreSQL: most guarded writes in one statement.
    pub max_batch: usize,
    /// PostgreSQL: writes queued before a statement starts beside one in flight
    /// (with `write_workers` above 1).
    pub overlap_batch: usize,
    /// PostgreSQL's `lock_timeout` on the writer's connections (four fifths of the
    /// request timeout): a write still waiting for a row lock fails, answered
    /// DEADLINE_EXCEEDED, before its caller's deadline, instead of committing after it.
    pub lock_timeout: Option<Duration>,
}

fn options(url: &str, max: u32, settings: &StoreSettings, lock_timeout: Option<Duration>) -> ConnectOptions {
    let mut opt = ConnectOptions::new(url.to_owned());
    opt.max_connections(max)
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        .connect_timeout(settings.acquire_timeout)
        // Connections idle this long are dropped, so a restarted database is
        // reconnected to instead of failing on a dead socket.
        .idle_timeout(Duration::from_secs(60))
        .test_before_acquire(false)
        .sqlx_logging(false);
    if let Some(limit) = lock_timeout {
        let ms = limit.as_millis().max(1);
        opt.map_sqlx_postgres_opts(move |o| o.options([("lock_timeout", format!("{ms}ms"))]));
    }
    opt.map_sqlx_sqlite_opts(|o| {
        o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(false)
    });
    opt
}

impl Store {
    /// Opens the database (creating an SQLite file if needed). Does not migrate.
    pub async fn connect(settings: &StoreSettings) -> Result<Self, StoreError> {
        let url = settings.url.as_str();
        let sqlite = url.starts_with("sqlite:");
        let memory = sqlite && url.contains(":memory:") || url.contains("mode=memory");
        let writer_max = if sqlite { 1 } else { settings.max_connections };
        let writer = Database::connect(options(url, writer_max, settings, settings.lock_timeout)).await?;
        let reader = if sqlite && !memory {
            Database::connect(options(url, settings.max_connections, settings, None)).await?
        } else {
            writer.clone()
        };
        let batcher = (!sqlite).then(|| {
            group_commit::Batcher::start(
                writer.clone(),
                group_commit::Limits {
                    workers: settings.write_workers,
                    max_batch: settings.max_batch,
                    overlap_batch: settings.overlap_batch,
                },
            )
        });
        Ok(Self {
            reader,
            writer,
            max_events: settings.max_events_per_session.max(1),
            batcher,
        })
    }

    /// The connection migrations run on.
    pub fn migration_connection(&self) -> &DatabaseConnection {
        &self.writer
    }
}

/// (connections open, of which idle) of one pool.
pub(super) fn pool_size(db: &DatabaseConnection) -> (u32, u32) {
    match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle() as u32)
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle() as u32)
        }
    }
}
