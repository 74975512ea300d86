//! What the client has had to do: counters for [`SessionClient::stats`], and the
//! same through the OpenTelemetry metrics API, where the host application chooses
//! the exporter (none installed: the instruments cost next to nothing).
//!
//! [`SessionClient::stats`]: super::SessionClient::stats

use std::{
    fmt,
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter, UpDownCounter},
};

/// The instrumentation scope of the client's metrics.
pub const METER_NAME: &str = "session-service-client";

/// Counters since the client was made (shared by its clones and its handles).
pub struct ClientStats {
    conflicts: AtomicU64,
    retries: AtomicU64,
    exhaustions: AtomicU64,
    rollbacks: AtomicU64,
    queued: AtomicI64,
    instruments: Instruments,
}

/// A snapshot of [`ClientStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// ABORTED answers (benign: the change was re-applied on the current state).
    pub conflicts: u64,
    /// Attempts after the first, for any reason.
    pub retries: u64,
    /// Calls that ran out of retries.
    pub exhaustions: u64,
    /// Optimistic mutations the server refused, taken back from the local view.
    pub rollbacks: u64,
    /// Optimistic mutations waiting for the server now.
    pub queued: i64,
}

/// The OpenTelemetry side: `session.client.*`.
struct Instruments {
    conflicts: Counter<u64>,
    retries: Counter<u64>,
    exhaustions: Counter<u64>,
    rollbacks: Counter<u64>,
    queue_depth: UpDownCounter<i64>,
    latency: Histogram<f64>,
}

impl Instruments {
    fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str, description: &'static str| {
            meter.u64_counter(name).with_description(description).build()
        };
        Self {
            conflicts: counter("session.client.conflicts", "ABORTED answers (version conflicts)"),
            retries: counter(
                "session.client.retries",
                "Attempts after the first, for any reason",
            ),
            exhaustions: counter("session.client.exhaustions", "Calls that ran out of retries"),
            rollbacks: counter(
                "session.client.rollbacks",
                "Optimistic mutations refused and rolled back",
            ),
            queue_depth: meter
                .i64_up_down_counter("session.client.queue_depth")
                .with_description("Optimistic mutations waiting for the server")
                .build(),
            latency: meter
                .f64_histogram("session.client.call.duration")
                .with_unit("s")
                .with_description("One RPC attempt, by method")
                .build(),
        }
    }
}

impl Default for ClientStats {
    /// Recording through the global meter provider (the host's, if it set one).
    fn default() -> Self {
        Self::with_meter(&opentelemetry::global::meter(METER_NAME))
    }
}

impl fmt::Debug for ClientStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientStats").field(&self.snapshot()).finish()
    }
}

impl ClientStats {
    /// Counters that also record through `meter`.
    pub fn with_meter(meter: &Meter) -> Self {
        Self {
            conflicts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            exhaustions: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            queued: AtomicI64::new(0),
            instruments: Instruments::new(meter),
        }
    }

    pub(crate) fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        self.instruments.conflicts.add(1, &[]);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.instruments.retries.add(1, &[]);
    }

    pub(crate) fn exhausted(&self) {
        self.exhaustions.fetch_add(1, Ordering::Relaxed);
        self.instruments.exhaustions.add(1, &[]);
    }

    pub(crate) fn rolled_back(&self) {
        self.rollbacks.fetch_add(1, Ordering::Relaxed);
        self.instruments.rollbacks.add(1, &[]);
    }

    /// A mutation joined (`+1`) or left (`-1`) an optimistic handle's queue.
    pub(crate) fn queued(&self, delta: i64) {
        self.queued.fetch_add(delta, Ordering::Relaxed);
        self.instruments.queue_depth.add(delta, &[]);
    }

    /// One RPC attempt of `method` took `seconds`.
    pub(crate) fn call(&self, method: &'static str, seconds: f64) {
        self.instruments
            .latency
            .record(seconds, &[KeyValue::new("rpc.method", method)]);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            conflicts: self.conflicts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            exhaustions: self.exhaustions.load(Ordering::Relaxed),
            rollbacks: self.rollbacks.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
        }
    }
}

/// The RPC a request message is for: `pb::CreateSessionRequest` → `CreateSession`.
pub(crate) fn method_of<M>() -> &'static str {
    let name = std::any::type_name::<M>();
    let name = name.rsplit("::").next().unwrap_or(name);
    name.strip_suffix("Request").unwrap_or(name)
}
