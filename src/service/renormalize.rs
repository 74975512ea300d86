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
        // The first page of each world, which is all an idle sweep reads.
        let mut firsts = Vec::new();
        for (world_id, version) in store.world_rule_versions().await? {
            let ids = store.stale_sessions(world_id, version, 0, batch).await?;
            if !ids.is_empty() {
                firsts.push((world_id, version, ids));
            }
        }
        // What this sweep has to do, counted down as it goes: the progress metric.
        let mut waiting = 0;
        for (world_id, version, _) in &firsts {
            waiting += store.count_stale(*world_id, *version).await? as i64;
        }
        pending.set(waiting);
        let mut total = 0;
        let mut failed = 0;
        for (world_id, version, first) in firsts {
            let mut page = first;
            while let Some(&last) = page.last() {
                for id in &page {
                    if self.inner.shutdown.is_cancelled() {
                        return Ok(total);
                    }
                    if !self.renormalize_one(*id).await {
                        failed += 1;
                    }
                    // Sessions that went stale after the count are done too: not below 0.
                    waiting = (waiting - 1).max(0);
                    pending.set(waiting);
                }
                total += page.len() as u64;
                tracing::info!(
                    world_id,
                    rules_version = version,
                    done = total,
                    "re-normalizing sessions"
                );
                page = store.stale_sessions(world_id, version, last, batch).await?;
            }
        }
        // What failed is still stale (the next sweep retries it).
        pending.set(failed);
        Ok(total)
    }

    /// False if the session is still normalized with old rules afterwards.
    async fn renormalize_one(&self, id: i64) -> bool {
        let Ok(session_id) = SessionId::parse(id, "session_id") else {
            return true;
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
                true
            }
            // Deleted meanwhile: nothing to do.
            Err(super::ServiceError::NotFound) => true,
            Err(error) => {
                tracing::warn!(session_id = id, %error, "re-normalizing a session failed");
                false
            }
        }
    }
}
