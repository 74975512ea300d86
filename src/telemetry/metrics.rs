//! Prometheus metrics, served as text on `/metrics` when a metrics address is set.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// gRPC method and status code of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub code: String,
}

/// One label named `outcome` / `state` / `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolState {
    pub state: &'static str,
}

type LatencyFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~4 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// Every series the service exports. Cheap to share (`Arc`) and lock-free to update.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// Requests holding a slot of `server.concurrency_limit` (health checks never do).
    pub in_flight: Gauge,
    pub latency: LatencyFamily,
    pub conflicts: Counter,
    pub replays: Counter,
    /// `hit`, `miss`, `bypass` (Redis unreachable or slow: served from the database).
    pub cache: Family<Outcome, Counter>,
    /// `in_use` and `idle` database connections, refreshed at each scrape.
    pub db_pool: Family<PoolState, Gauge>,
    pub watch_streams: Gauge,
    pub renormalized: Counter,
    pub renormalize_pending: Gauge,
    /// Guarded writes per group-commit statement (PostgreSQL).
    pub write_batch_size: Histogram,
    /// Writes without an expected version folded into an earlier one's statement.
    pub folded: Counter,
    /// Rounds of such writes that could not be written as one and went one at a time.
    pub folded_fallbacks: Counter,
    /// Changed TLS files: `reloaded`, or `rejected` (the last good certificate stays).
    pub tls_reloads: Family<Outcome, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("session");
        let m = Self {
            requests: Family::default(),
            in_flight: Gauge::default(),
            latency: Family::new_with_constructor(latency_histogram),
            conflicts: Counter::default(),
            replays: Counter::default(),
            cache: Family::default(),
            db_pool: Family::default(),
            watch_streams: Gauge::default(),
            renormalized: Counter::default(),
            renormalize_pending: Gauge::default(),
            // 1, 2, 4 … 128
            write_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            folded: Counter::default(),
            folded_fallbacks: Counter::default(),
            tls_reloads: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "grpc_requests",
            "gRPC requests by method and status code",
            m.requests.clone(),
        );
        r.register(
            "grpc_requests_in_flight",
            "gRPC requests holding a slot of the concurrency limit (beyond it they are shed)",
            m.in_flight.clone(),
        );
        r.register(
            "grpc_request_duration_seconds",
            "gRPC request latency by method and status code",
            m.latency.clone(),
        );
        r.register(
            "version_conflicts",
            "Writes refused with ABORTED (version conflict)",
            m.conflicts.clone(),
        );
        r.register(
            "idempotent_replays",
            "Writes answered from a recorded request_id",
            m.replays.clone(),
        );
        r.register(
            "writes_folded",
            "Writes of one session (without expected_version) folded into an earlier one's statement",
            m.folded.clone(),
        );
        r.register(
            "write_folds_split",
            "Rounds of folded writes that went one at a time instead (a chain failed as a whole)",
            m.folded_fallbacks.clone(),
        );
        r.register(
            "cache_lookups",
            "Session cache lookups by outcome (hit, miss, bypass)",
            m.cache.clone(),
        );
        r.register(
            "db_pool_connections",
            "Database connections by state (in_use, idle)",
            m.db_pool.clone(),
        );
        r.register(
            "watch_streams_open",
            "WatchSession streams open",
            m.watch_streams.clone(),
        );
        r.register(
            "renormalized_sessions",
            "Sessions re-normalized after their world's rules changed",
            m.renormalized.clone(),
        );
        r.register(
            "write_batch_size",
            "Guarded writes sent to PostgreSQL in one group-commit statement",
            m.write_batch_size.clone(),
        );
        r.register(
            "renormalize_pending_sessions",
            "Sessions still normalized with old world rules, counted down by the running sweep",
            m.renormalize_pending.clone(),
        );
        r.register(
            "tls_reloads",
            "Changed TLS files by outcome (reloaded, rejected: the last good certificate stays)",
            m.tls_reloads.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts one cache lookup.
    pub fn cache_outcome(&self, outcome: &'static str) {
        self.cache.get_or_create(&Outcome { outcome }).inc();
    }

    /// Records one finished request.
    pub fn request(&self, method: &str, code: tonic::Code, seconds: f64) {
        let labels = RequestLabels {
            method: method.to_owned(),
            code: format!("{code:?}"),
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// Sets the pool gauges.
    pub fn pool(&self, in_use: u32, idle: u32) {
        self.db_pool
            .get_or_create(&PoolState { state: "in_use" })
            .set(in_use as i64);
        self.db_pool
            .get_or_create(&PoolState { state: "idle" })
            .set(idle as i64);
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
