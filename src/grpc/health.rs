//! gRPC health: SERVING for `""` and the service while the database answers.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::store::Store;

/// The service name probes use for readiness.
pub const SERVICE_NAME: &str = "pixsim.session.v1.SessionService";

/// Sets both health entries.
pub async fn set(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}

/// Pings the database every `every`; flips health when the answer changes.
pub async fn probe_forever(
    store: Store,
    reporter: HealthReporter,
    every: Duration,
    shutdown: CancellationToken,
) {
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
            set(&reporter, ok).await;
        }
    }
}
