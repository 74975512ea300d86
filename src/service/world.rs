//! GetWorldRules and PutWorldRules.

use std::sync::Arc;

use super::{Caller, ServiceError, Sessions, ended};
use crate::domain::{DomainError, WorldRules};

impl Sessions {
    /// The rules of a world: its own, or the defaults at version 0.
    #[tracing::instrument(skip(self), fields(outcome))]
    pub async fn world_rules(&self, world_id: i64) -> Result<WorldRules, ServiceError> {
        if world_id <= 0 {
            return ended(Err(DomainError::invalid(
                "world_id",
                "must be a positive integer",
            )
            .into()));
        }
        ended(self.rules_for(Some(world_id)).await.map(Arc::unwrap_or_clone))
    }

    /// Replaces a world's rules (admin only) and wakes the re-normalizer.
    #[tracing::instrument(
        skip(self, caller, rules),
        fields(world_id = rules.world_id, user_id = caller.user_id, outcome)
    )]
    pub async fn put_world_rules(
        &self,
        caller: &Caller,
        rules: WorldRules,
        expected: Option<i64>,
    ) -> Result<WorldRules, ServiceError> {
        ended(self.replace_world_rules(caller, rules, expected).await)
    }

    async fn replace_world_rules(
        &self,
        caller: &Caller,
        rules: WorldRules,
        expected: Option<i64>,
    ) -> Result<WorldRules, ServiceError> {
        if !caller.admin {
            return Err(ServiceError::PermissionDenied(
                "changing world rules needs the admin scope",
            ));
        }
        if expected.is_some_and(|v| v < 0) {
            return Err(DomainError::invalid("expected_version", "must not be negative").into());
        }
        let saved = match self.inner.store.put_world_rules(&rules, expected).await {
            Err(crate::store::StoreError::RulesConflict(current)) => {
                let expected = expected.unwrap_or_default();
                return Err(ServiceError::RulesConflict { current, expected });
            }
            other => other?,
        };
        tracing::info!(
            world_id = saved.world_id,
            version = saved.version,
            "world rules changed"
        );
        self.inner.rules_changed.notify_one();
        Ok(saved)
    }
}
