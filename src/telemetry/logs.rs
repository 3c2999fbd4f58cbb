//! Logging through `tracing`: the subscriber, its format and filter.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The tracing target of the audit trail (see `api::audit`), written at info
/// level whatever the log filter says.
pub const AUDIT_TARGET: &str = "audit";

/// Installs the global subscriber writing to stderr. `filter` uses RUST_LOG
/// syntax; the audit trail ([`AUDIT_TARGET`]) is written at info level
/// unless the filter names its target. Fails when the filter is malformed
/// or a subscriber is installed.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    install(format, filter, None).map(drop)
}

/// Like [`init`], and also exports this crate's spans to the OTLP
/// collector at `otlp_endpoint` when there is one (see
/// [`super::traces`]), whatever the log filter says. Must run inside a
/// Tokio runtime. The answer flushes the spans still queued when the
/// server ends.
pub fn init_with_traces(
    format: LogFormat,
    filter: &str,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Telemetry> {
    install(format, filter, otlp_endpoint)
}

/// What the logger keeps running: the span exporter, when traces are on.
#[must_use = "dropping it without shutdown loses the spans still queued"]
pub struct Telemetry {
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued and stops the exporter.
    pub fn shutdown(self) {
        if let Some(traces) = self.traces
            && let Err(error) = traces.shutdown_with_timeout(std::time::Duration::from_secs(5))
        {
            tracing::warn!(%error, "the last spans could not be exported");
        }
    }
}

fn install(
    format: LogFormat,
    filter: &str,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<Telemetry> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let audit = AUDIT_TARGET;
    let with_audit = if filter.contains(audit) {
        filter.to_owned()
    } else {
        format!("{filter},{audit}=info")
    };
    let filter = EnvFilter::try_new(&with_audit)
        .map_err(|e| anyhow::anyhow!("log filter {filter:?} is invalid: {e}"))?;
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let lines = match format {
        LogFormat::Human => lines.boxed(),
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
    };
    let (traces, spans) = match otlp_endpoint {
        Some(endpoint) => {
            let (provider, layer) = super::traces::otel_layer(endpoint)?;
            // This crate's spans and events only: the exporter's own calls
            // (tonic, h2) must not trace themselves.
            let ours = tracing_subscriber::filter::Targets::new()
                .with_target("paddock", tracing::Level::INFO);
            (Some(provider), Some(layer.with_filter(ours)))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(spans)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(Telemetry { traces })
}
