//! `session-service migrate up|down|status`, and migrations at start-up.

use migration::{Migrator, MigratorTrait};

use super::{Store, StoreError};

/// One migration and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

impl Store {
    /// Applies pending migrations (all, or `steps`).
    pub async fn migrate_up(&self, steps: Option<u32>) -> Result<(), StoreError> {
        Migrator::up(self.migration_connection(), steps).await?;
        Ok(())
    }

    /// Rolls back the last `steps` migrations.
    pub async fn migrate_down(&self, steps: u32) -> Result<(), StoreError> {
        Migrator::down(self.migration_connection(), Some(steps)).await?;
        Ok(())
    }

    /// Every known migration, oldest first, with its state.
    pub async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError> {
        let applied: Vec<String> = Migrator::get_applied_migrations(self.migration_connection())
            .await?
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        Ok(Migrator::migrations()
            .iter()
            .map(|m| MigrationState {
                name: m.name().to_owned(),
                applied: applied.iter().any(|a| a == m.name()),
            })
            .collect())
    }
}
