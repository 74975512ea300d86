//! sea-orm entities: the rows as the database stores them.

pub mod event;
pub mod request;
pub mod session;
pub mod world;
