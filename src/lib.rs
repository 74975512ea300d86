//! session-service: game sessions with optimistic concurrency over gRPC.
//!
//! Layers, top to bottom: `grpc` (the server edge) → `service` (use cases) →
//! `store` (sea-orm) and `cache` (fred) → `domain` (pure rules). `wire` holds the
//! generated contract and its conversions, shared with the `client`
//! (docs/architecture.md).
//!
//! The public surface: `domain`, `wire` (`pb`) and `client` for callers (the
//! `client` feature builds only these); `app` and `config` to run the server (the
//! binary and the integration tests); `store`, `cache` and `telemetry` for the
//! integration tests and the load generator. The edge (`grpc`) and the use cases
//! (`service`) are the crate's own.

#[cfg(feature = "client")]
pub mod client;
pub mod domain;
pub mod wire;

pub use wire::pb;

#[cfg(feature = "server")]
pub mod app;
#[cfg(feature = "server")]
pub mod cache;
#[cfg(feature = "server")]
pub mod config;
// The edge and the use cases are the server's own: nothing outside the crate calls them.
#[cfg(feature = "server")]
pub(crate) mod grpc;
#[cfg(feature = "server")]
pub(crate) mod service;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod telemetry;
