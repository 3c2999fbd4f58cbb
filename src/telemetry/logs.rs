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
    let audit = AUDIT_TARGET;
    let with_audit = if filter.contains(audit) {
        filter.to_owned()
    } else {
        format!("{filter},{audit}=info")
    };
    let filter = EnvFilter::try_new(&with_audit)
        .map_err(|e| anyhow::anyhow!("log filter {filter:?} is invalid: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
