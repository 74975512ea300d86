//! Conflicts a program can handle: when the server will not take a mutation as it
//! is (re-applying it on the current session is refused, or the retries ran out),
//! a merge hook sees what the caller meant, where the session is now, and the
//! difference, and decides.

use std::sync::Arc;

use crate::domain::{JsonMap, Session, SessionOp};

/// What the hook is shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The mutation as the caller applied it.
    pub intent: Vec<SessionOp>,
    /// The session as the server has it now.
    pub current: Session,
    /// What the caller expected (`intent` on the session it was shown) against
    /// `current`: `{field: {"old": <current>, "new": <expected>}}` for each field that
    /// differs (`domain::diff`).
    pub diff: JsonMap,
    /// Why the mutation did not go through as it was.
    pub reason: String,
}

/// The hook's decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    /// Give up: roll the mutation back; its future resolves with the error.
    Drop,
    /// Apply the same ops again, on the current session.
    Reapply,
    /// Apply these ops instead (the caller's own merge), on the current session.
    Replace(Vec<SessionOp>),
}

/// A merge hook: called on the handle's sender task, so it should not block.
pub type MergeHook = Arc<dyn Fn(&Conflict) -> Merge + Send + Sync>;

/// How many times one mutation may go back to the hook before it is dropped.
pub(super) const MAX_MERGES: usize = 3;
