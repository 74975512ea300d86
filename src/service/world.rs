//! GetWorldRules and PutWorldRules.

use std::sync::Arc;

use super::{Caller, ServiceError, Sessions, ended};
use crate::{
    domain::{PutRules, WorldRules},
    store::StoreError,
};

impl Sessions {
    /// The rules of a world: its own, or the defaults at version 0.
    #[tracing::instrument(skip(self), fields(outcome))]
    pub async fn world_rules(&self, world_id: i64) -> Result<WorldRules, ServiceError> {
        let rules = self.inner.store.rules(Some(world_id)).await;
        ended(rules.map(Arc::unwrap_or_clone).map_err(ServiceError::from))
    }

    /// Replaces a world's rules (admin only) and wakes the re-normalizer.
    #[tracing::instrument(
        skip(self, caller, put),
        fields(world_id = put.rules.world_id, user_id = caller.user_id, outcome)
    )]
    pub async fn put_world_rules(&self, caller: &Caller, put: PutRules) -> Result<WorldRules, ServiceError> {
        ended(self.replace_world_rules(caller, put).await)
    }

    async fn replace_world_rules(&self, caller: &Caller, put: PutRules) -> Result<WorldRules, ServiceError> {
        let PutRules { rules, expected } = put;
        if !caller.admin {
            return Err(ServiceError::PermissionDenied(
                "changing world rules needs the admin scope",
            ));
        }
        let saved = match self.inner.store.put_world_rules(&rules, expected).await {
            Err(StoreError::RulesConflict(current)) => {
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
