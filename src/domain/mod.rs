//! Pure session rules: no I/O, no tonic, no sea-orm.
//!
//! The server and the client both run this code, so an optimistic change made in a
//! game client is computed exactly as the server will compute it.

mod commands;
mod diff;
mod error;
mod ids;
mod json;
pub mod ops;
mod plan;
mod relationships;
mod session;
mod world;

pub use commands::{Change, CreateRequest, EventsQuery, ListQuery, PutRules, SessionEvent, Write};
pub use diff::{diff, keys as diff_keys};
pub use error::{DomainError, FieldViolation};
pub use ids::{PageSize, PageToken, RequestId, SessionId, Version};
pub use json::{JsonLimits, JsonMap, number};
pub use ops::SessionOp;
pub use plan::{Planned, plan};
pub use relationships::normalize_relationships;
pub use session::{Advance, Changed, NewSession, Session, SessionPatch, WorldTime, changes};
pub use world::{IntimacyLevel, Stats, Tier, WorldMode, WorldRules};

/// A plain session for the crate's unit tests.
#[cfg(test)]
pub(crate) use session::tests::{sample as sample_session, sample_at};
