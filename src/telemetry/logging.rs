//! The tracing subscriber: human-readable in development, JSON in production, plus
//! OpenTelemetry export when the standard `OTEL_*` variables ask for it.

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use super::tracing_otel;
use crate::config::{LogFormat, LogSettings};

/// Keeps the exporter alive; dropping it flushes the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber. Call once, from `main`, inside the runtime.
pub fn init(settings: &LogSettings) -> Telemetry {
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt_layer = match settings.format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
        LogFormat::Pretty => fmt::layer().compact().boxed(),
    };
    let provider = if tracing_otel::otlp_configured() {
        match tracing_otel::otlp_provider() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("OpenTelemetry export disabled: {e}");
                None
            }
        }
    } else {
        None
    };
    let otel = provider.as_ref().map(tracing_otel::layer);
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel)
        .init();
    Telemetry { provider }
}

/// Masks the password of `scheme://user:password@host`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = userinfo.split(':').next().unwrap_or_default();
    let masked = if userinfo.contains(':') {
        format!("{user}:<redacted>")
    } else {
        user.to_owned()
    };
    format!("{}://{masked}@{}", &url[..scheme_end], &rest[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("redis://:secret@host:6379/0"),
            "redis://:<redacted>@host:6379/0"
        );
        assert_eq!(
            redact_url("postgres://app:pw@db/x"),
            "postgres://app:<redacted>@db/x"
        );
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
    }
}
