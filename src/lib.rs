//! session-service: game sessions with optimistic concurrency over gRPC.
//!
//! Layers, top to bottom: `grpc` (the server edge) → `service` (use cases) →
//! `store` (sea-orm) and `cache` (fred) → `domain` (pure rules). `wire` holds the
//! generated contract and its conversions, shared with the `client`.

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
#[cfg(feature = "server")]
pub mod grpc;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod telemetry;
