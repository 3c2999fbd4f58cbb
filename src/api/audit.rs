//! The audit trail: one log event on the target `audit` for every call that
//! changes a sandbox or runs something in it, saying who (tenant and API
//! key id), what (action, sandbox, command or path) and how it ended.
//! Refused calls are recorded too. Environment values and file contents are
//! never part of it; commands are recorded as given.
//!
//! Each audited request says what it does and to what ([`Audited`]);
//! [`audited`] runs a call and records it, so a handler writes no trail of
//! its own. The logger keeps `audit` events at info level whatever the
//! filter says (see [`crate::telemetry::AUDIT_TARGET`]), so collecting the
//! server's log collects the trail.

use std::future::Future;

use tonic::{Request, Response, Status};

use super::auth::{Caller, caller_of, tenant_of};
use super::status::code_name;
use crate::error::Error;
use crate::pb;
use crate::telemetry::AUDIT_TARGET;

/// The longest a caller-given field is recorded.
const MAX_FIELD_CHARS: usize = 512;

/// A request the audit trail records: what it does and to what, read from
/// the request as the caller sent it (valid or not).
pub trait Audited {
    /// The action, as the trail names it ("create", "run", "write file").
    fn action(&self) -> &'static str;
    /// The sandbox acted on, as the caller gave it.
    fn sandbox_id(&self) -> &str;
    /// On what: a command line or a path; never environment values or
    /// file contents.
    fn detail(&self) -> String;
}

/// One event of the trail, to be recorded once the call has ended.
pub struct Entry {
    caller: Caller,
    action: &'static str,
    sandbox_id: String,
    detail: String,
}

impl Entry {
    /// The event of `caller` sending `request`.
    pub fn new(caller: &Caller, request: &impl Audited) -> Self {
        name_in_span(&caller.tenant, request.sandbox_id());
        Self {
            caller: caller.clone(),
            action: request.action(),
            sandbox_id: request.sandbox_id().to_owned(),
            detail: request.detail(),
        }
    }

    /// Names the sandbox the call turned out to act on (a create's new
    /// sandbox), and the action it turned out to be.
    pub fn acted_on(&mut self, sandbox_id: &str, action: &'static str) {
        name_in_span(&self.caller.tenant, sandbox_id);
        sandbox_id.clone_into(&mut self.sandbox_id);
        self.action = action;
    }

    /// Records the event with `outcome`, and passes the outcome on.
    pub fn record<T>(self, outcome: Result<T, Status>) -> Result<T, Status> {
        let key_id = self.caller.key_id.as_deref().unwrap_or("-");
        // Fields come from callers: keep a line a line.
        let sandbox_id = shorten(&self.sandbox_id);
        let detail = shorten(&self.detail);
        let (ended, reason) = match &outcome {
            Ok(_) => ("ok", ""),
            Err(status) => (code_name(status.code()), status.message()),
        };
        tracing::info!(
            target: AUDIT_TARGET,
            tenant = %self.caller.tenant,
            key_id,
            action = self.action,
            sandbox_id = %sandbox_id,
            detail = %detail,
            outcome = ended,
            reason,
            "audit"
        );
        outcome
    }
}

/// Runs `call` for the caller of `request` and records it in the trail.
pub async fn audited<R, T, F, Fut>(request: Request<R>, call: F) -> Result<Response<T>, Status>
where
    R: Audited,
    F: FnOnce(Caller, R) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let caller = caller_of(&request);
    let request = request.into_inner();
    let entry = Entry::new(&caller, &request);
    let outcome = call(caller, request).await;
    entry
        .record(outcome.map_err(Status::from))
        .map(Response::new)
}

/// At most [`MAX_FIELD_CHARS`] characters of `text`, marked when cut.
fn shorten(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_FIELD_CHARS) {
        None => text.into(),
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()).into(),
    }
}

/// A command as the audit trail shows it: its argv joined by spaces, or
/// `sh -c LINE`.
fn command(argv: &[String], shell: &str) -> String {
    if argv.is_empty() {
        format!("sh -c {shell}")
    } else {
        argv.join(" ")
    }
}

fn spec_command(spec: Option<&pb::CommandSpec>) -> String {
    spec.map(|spec| command(&spec.command, &spec.shell))
        .unwrap_or_default()
}

/// `impl Audited` for requests whose action does not depend on their
/// content: `Type => "action", |request| detail`.
macro_rules! audited_requests {
    ($($request:ty => $action:literal, |$r:ident| $detail:expr;)*) => {
        $(
            impl Audited for $request {
                fn action(&self) -> &'static str {
                    $action
                }
                fn sandbox_id(&self) -> &str {
                    &self.sandbox_id
                }
                fn detail(&self) -> String {
                    let $r = self;
                    $detail
                }
            }
        )*
    };
}

audited_requests! {
    pb::UpdateSandboxRequest => "update", |_r| String::new();
    pb::StopSandboxRequest => "stop", |_r| String::new();
    pb::StartSandboxRequest => "start", |_r| String::new();
    pb::DeleteSandboxRequest => "delete", |_r| String::new();
    pb::RunCommandRequest => "run", |r| spec_command(r.spec.as_ref());
    pb::StartCommandRequest => "start command", |r| spec_command(r.spec.as_ref());
    pb::SignalCommandRequest => "signal", |r| format!("{} {}", r.signal, r.command_id);
    pb::KillProcessesRequest => "kill processes", |r| r.signal.clone();
    pb::UploadHeader => "upload", |r| r.path.clone();
    pb::UploadArchiveHeader => "upload archive", |r| r.path.clone();
    pb::MakeDirRequest => "make dir", |r| r.path.clone();
    pb::RemoveRequest => "remove", |r| r.path.clone();
    pb::MoveRequest => "move", |r| format!("{} -> {}", r.source, r.destination);
    pb::WriteFileRequest => "write file", |r| r.path.clone();
    pb::EditFileRequest => "edit file", |r| r.path.clone();
    pb::PortForwardStart => "port forward", |r| forward_detail(r);
    pb::ExposePortRequest => "expose port", |r| r.port.to_string();
    pb::UnexposePortRequest => "unexpose port", |r| r.port.to_string();
    pb::CreatePreviewUrlRequest => "create preview url", |r| r.port.to_string();
    pb::SnapshotSandboxRequest => "snapshot", |r| r.template.clone();
}

/// `impl Audited` for requests about a named volume or template: no
/// sandbox, the name as the detail.
macro_rules! audited_named_requests {
    ($($request:ty => $action:literal;)*) => {
        $(
            impl Audited for $request {
                fn action(&self) -> &'static str {
                    $action
                }
                fn sandbox_id(&self) -> &str {
                    ""
                }
                fn detail(&self) -> String {
                    self.name.clone()
                }
            }
        )*
    };
}

audited_named_requests! {
    pb::CreateVolumeRequest => "create volume";
    pb::DeleteVolumeRequest => "delete volume";
    pb::CreateTemplateRequest => "create template";
    pb::UpdateTemplateRequest => "update template";
    pb::DeleteTemplateRequest => "delete template";
    pb::BuildTemplateHeader => "build template";
}

fn forward_detail(start: &pb::PortForwardStart) -> String {
    if start.address.is_empty() {
        start.port.to_string()
    } else {
        format!("{}:{}", start.address, start.port)
    }
}

/// A create acts on a sandbox that exists only once it succeeded (see
/// [`Entry::acted_on`]).
impl Audited for pb::CreateSandboxRequest {
    fn action(&self) -> &'static str {
        "create"
    }
    fn sandbox_id(&self) -> &str {
        ""
    }
    fn detail(&self) -> String {
        format!(
            "provider={} image={} name={}",
            self.provider,
            self.image,
            self.name.as_deref().unwrap_or("")
        )
    }
}

/// An Exec stream's first message: a start runs a command, an attach
/// follows one.
impl Audited for pb::ExecRequest {
    fn action(&self) -> &'static str {
        match &self.request {
            Some(pb::exec_request::Request::Attach(_)) => "attach",
            _ => "exec",
        }
    }
    fn sandbox_id(&self) -> &str {
        use pb::exec_request::Request as R;
        match &self.request {
            Some(R::Start(start)) => &start.sandbox_id,
            Some(R::Attach(attach)) => &attach.sandbox_id,
            _ => "",
        }
    }
    fn detail(&self) -> String {
        use pb::exec_request::Request as R;
        match &self.request {
            Some(R::Start(start)) => spec_command(start.spec.as_ref()),
            Some(R::Attach(attach)) => attach.command_id.clone(),
            _ => String::new(),
        }
    }
}

/// A request the audit trail leaves out, as its call's span names it: the
/// sandbox it reads, if any.
pub trait Reads {
    /// The sandbox read, as the caller gave it; empty when the call names
    /// none.
    fn sandbox_id(&self) -> &str;
}

macro_rules! reads_a_sandbox {
    ($($request:ty),* $(,)?) => {
        $(
            impl Reads for $request {
                fn sandbox_id(&self) -> &str {
                    &self.sandbox_id
                }
            }
        )*
    };
}

reads_a_sandbox!(
    pb::GetSandboxRequest,
    pb::GetSandboxMetricsRequest,
    pb::GetCommandRequest,
    pb::ListCommandsRequest,
    pb::DownloadRequest,
    pb::DownloadArchiveRequest,
    pb::StatRequest,
    pb::ListDirRequest,
    pb::ReadFileRequest,
    pb::FindFilesRequest,
    pb::GrepRequest,
);

/// `impl Reads` for requests that read no sandbox.
macro_rules! reads_no_sandbox {
    ($($request:ty),* $(,)?) => {
        $(
            impl Reads for $request {
                fn sandbox_id(&self) -> &str {
                    ""
                }
            }
        )*
    };
}

reads_no_sandbox!(
    pb::ListSandboxesRequest,
    pb::GetVolumeRequest,
    pb::ListVolumesRequest,
    pb::GetTemplateRequest,
    pb::ListTemplatesRequest,
);

/// Names the caller's tenant and the sandbox acted on in the current span,
/// the call's (see `telemetry::rpc`), so that its trace says who and what.
fn name_in_span(tenant: &str, sandbox_id: &str) {
    let span = tracing::Span::current();
    span.record("tenant", tenant);
    if !sandbox_id.is_empty() {
        span.record("sandbox_id", shorten(sandbox_id).as_ref());
    }
}

/// Runs `call`, which changes nothing, for the tenant of `request`: the
/// counterpart of [`audited`] for calls the audit trail leaves out.
pub async fn unaudited<R, T, F, Fut>(request: Request<R>, call: F) -> Result<Response<T>, Status>
where
    R: Reads,
    F: FnOnce(String, R) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let tenant = tenant_of(&request);
    name_in_span(&tenant, request.get_ref().sandbox_id());
    call(tenant, request.into_inner())
        .await
        .map(Response::new)
        .map_err(Status::from)
}
