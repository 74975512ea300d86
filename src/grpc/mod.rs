//! The server edge: identity, the handlers, the one error mapping, health.

pub mod auth;
pub mod coalesce;
pub mod edge;
pub mod health;
mod sessions;
pub mod status;
pub mod tls;
pub mod web;

pub use sessions::SessionApi;
