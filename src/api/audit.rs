//! The audit trail: one log event on the target `audit` for every call that
//! changes a sandbox or runs something in it, saying who (tenant and API
//! key id), what (action, sandbox, command or path) and how it ended.
//! Refused calls are recorded too. Environment values and file contents are
//! never part of it; commands are recorded as given.
//!
//! The logger keeps `audit` events at info level whatever the filter says
//! (see [`crate::telemetry::AUDIT_TARGET`]), so collecting the server's log
//! collects the trail.

use tonic::Status;

use super::auth::Caller;
use crate::telemetry::AUDIT_TARGET as TARGET;

/// Records that `caller` did `action` to `sandbox_id` (`detail` saying on
/// what: a command, a path) with `outcome`, and passes the outcome on.
pub fn record<T>(
    caller: &Caller,
    action: &str,
    sandbox_id: &str,
    detail: &str,
    outcome: Result<T, Status>,
) -> Result<T, Status> {
    let key_id = caller.key_id.as_deref().unwrap_or("-");
    // Fields come from callers: keep a line a line.
    let sandbox_id = shorten(sandbox_id);
    let detail = shorten(detail);
    let (ended, reason) = match &outcome {
        Ok(_) => ("ok", ""),
        Err(status) => (super::code_name(status.code()), status.message()),
    };
    tracing::info!(
        target: TARGET,
        tenant = %caller.tenant,
        key_id,
        action,
        sandbox_id = %sandbox_id,
        detail = %detail,
        outcome = ended,
        reason,
        "audit"
    );
    outcome
}

/// At most [`MAX_FIELD_CHARS`] characters of `text`, marked when cut.
fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_FIELD_CHARS) {
        None => text.into(),
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()).into(),
    }
}

/// The longest a caller-given field is recorded.
const MAX_FIELD_CHARS: usize = 512;

/// A command as the audit trail shows it: its argv joined by spaces, or
/// `sh -c LINE`.
pub fn command(argv: &[String], shell: &str) -> String {
    if argv.is_empty() {
        format!("sh -c {shell}")
    } else {
        argv.join(" ")
    }
}

/// What an Exec stream's first message asks: the action, the sandbox and
/// the command (or the command attached to).
pub fn exec_first(first: &crate::pb::ExecRequest) -> (&'static str, String, String) {
    use crate::pb::exec_request::Request as Req;
    match &first.request {
        Some(Req::Start(start)) => (
            "exec",
            start.sandbox_id.clone(),
            start
                .spec
                .as_ref()
                .map(|spec| command(&spec.command, &spec.shell))
                .unwrap_or_default(),
        ),
        Some(Req::Attach(attach)) => (
            "attach",
            attach.sandbox_id.clone(),
            attach.command_id.clone(),
        ),
        _ => ("exec", String::new(), String::new()),
    }
}
