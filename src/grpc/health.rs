//! gRPC health.
//!
//! On the main port both `""` and `pixsim.session.v1.SessionService` are SERVING while
//! the database answers. On the optional plaintext health port (for Kubernetes
//! probes) `""` means "this process is alive" (liveness: NOT_SERVING only while it
//! stops), and the service name means "ready" (the database answers) — so a database
//! outage takes replicas out of rotation without restarting them.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::store::Store;

/// The service name probes use for readiness.
pub const SERVICE_NAME: &str = "pixsim.session.v1.SessionService";

fn status(serving: bool) -> ServingStatus {
    if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// The reporters of the main port and of the probe port.
#[derive(Clone)]
pub struct Health {
    main: HealthReporter,
    probes: Option<HealthReporter>,
}

impl Health {
    pub fn new(main: HealthReporter, probes: Option<HealthReporter>) -> Self {
        Self { main, probes }
    }

    /// The database answers (`true`) or not.
    pub async fn set_ready(&self, ready: bool) {
        self.main.set_service_status("", status(ready)).await;
        self.main.set_service_status(SERVICE_NAME, status(ready)).await;
        if let Some(p) = &self.probes {
            p.set_service_status(SERVICE_NAME, status(ready)).await;
        }
    }

    /// At start: alive and ready.
    pub async fn start(&self) {
        if let Some(p) = &self.probes {
            p.set_service_status("", ServingStatus::Serving).await;
        }
        self.set_ready(true).await;
    }

    /// While stopping: nothing is serving any more.
    pub async fn stopping(&self) {
        self.set_ready(false).await;
        if let Some(p) = &self.probes {
            p.set_service_status("", ServingStatus::NotServing).await;
        }
    }
}

/// Pings the database every `every`; flips readiness when the answer changes.
pub async fn probe_forever(store: Store, health: Health, every: Duration, shutdown: CancellationToken) {
    let mut serving = true;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let ok = tokio::time::timeout(every.max(Duration::from_secs(1)), store.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        if ok != serving {
            serving = ok;
            if ok {
                tracing::info!("database answers again: health SERVING");
            } else {
                tracing::warn!("database not answering: health NOT_SERVING");
            }
            health.set_ready(ok).await;
        }
    }
}
