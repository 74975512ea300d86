//! Background re-normalization: after a world's rules change, every session of the
//! world gets its tiers recomputed, each as an ordinary versioned write (event
//! `renormalize`, cache written through, watchers notified).
//!
//! Progress lives in the database (`game_sessions.rules_version`), so a restart
//! simply resumes: the sweep runs at start, on every rules change, and periodically.

use super::{Caller, Sessions};
use crate::domain::{Change, SessionId, Write};

/// Acts on any session; never an actual caller.
const SYSTEM: Caller = Caller {
    user_id: Caller::NO_USER,
    admin: true,
};

impl Sessions {
    pub(super) async fn renormalize_forever(self) {
        loop {
            if let Err(error) = self.sweep().await {
                tracing::warn!(%error, "re-normalization sweep failed; will retry");
            }
            tokio::select! {
                _ = self.inner.rules_changed.notified() => {}
                _ = tokio::time::sleep(self.inner.settings.renormalize_sweep) => {}
                _ = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// Re-normalizes every session whose rules version is behind its world's.
    pub async fn sweep(&self) -> Result<u64, super::ServiceError> {
        let store = &self.inner.store;
        let batch = self.inner.settings.renormalize_batch.max(1);
        let pending = &self.inner.metrics.renormalize_pending;
        let worlds = store.world_rule_versions().await?;
        // What this sweep has to do, counted down as it goes: the progress metric.
        let mut waiting = 0;
        for &(world_id, version) in &worlds {
            waiting += store.count_stale(world_id, version).await?;
        }
        pending.set(waiting as i64);
        let mut total = 0;
        for (world_id, version) in worlds {
            let mut after = 0;
            loop {
                let ids = store.stale_sessions(world_id, version, after, batch).await?;
                let Some(&last) = ids.last() else { break };
                for id in &ids {
                    if self.inner.shutdown.is_cancelled() {
                        return Ok(total);
                    }
                    self.renormalize_one(*id).await;
                    pending.dec();
                }
                total += ids.len() as u64;
                after = last;
                tracing::info!(
                    world_id,
                    rules_version = version,
                    done = total,
                    "re-normalizing sessions"
                );
            }
        }
        self.inner.metrics.renormalize_pending.set(0);
        Ok(total)
    }

    async fn renormalize_one(&self, id: i64) {
        let Ok(session_id) = SessionId::parse(id, "session_id") else {
            return;
        };
        let write = Write {
            session_id,
            expected: None,
            request_id: None,
            change: Change::Renormalize,
        };
        match self.locked(&SYSTEM, &write).await {
            Ok(_) => {
                self.inner.metrics.renormalized.inc();
            }
            // Deleted meanwhile: nothing to do.
            Err(super::ServiceError::NotFound) => {}
            Err(error) => tracing::warn!(session_id = id, %error, "re-normalizing a session failed"),
        }
    }
}
