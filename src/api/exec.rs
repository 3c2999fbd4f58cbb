//! `paddock.v1.ExecService`: validates each call, checks the sandbox, and
//! relays it to the sandbox's agent, which runs the command.
//!
//! The agent is untrusted: everything read from it is bounded in size, unary
//! calls have deadlines, and its errors are re-worded before they reach the
//! caller.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};

use super::audit;
use super::auth::{caller_of, tenant_of};
use super::convert::{self, exec as rules};
use crate::pb;
use crate::pb::exec_service_client::ExecServiceClient;
use crate::pb::exec_service_server::ExecService;
use crate::sandbox::Manager;

/// The largest message read from an agent: a RunCommand answer with both
/// capped outputs, or one output chunk, with room to spare.
pub(super) const AGENT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// The deadline of the agent calls that answer at once.
const AGENT_CALL_DEADLINE: Duration = Duration::from_secs(30);
/// How long an Exec stream may take to send its first message.
const FIRST_MESSAGE_DEADLINE: Duration = Duration::from_secs(30);
/// The longest agent error message passed on.
const MAX_AGENT_MESSAGE_CHARS: usize = 1024;

/// The exec service.
#[derive(Clone)]
pub struct ExecApi {
    manager: Manager,
    in_flight: Arc<Semaphore>,
    limit: usize,
    /// Each tenant's in-flight calls, for tenants with a `commands` quota.
    tenants_in_flight: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// The places a call holds while it runs: one of the server's, and one of
/// its tenant's when the tenant has a `commands` quota.
struct Admission {
    _server: OwnedSemaphorePermit,
    _tenant: Option<OwnedSemaphorePermit>,
}

impl ExecApi {
    /// A service relaying to the agents `manager` reaches, with at most
    /// `max_commands` Exec streams and RunCommand calls in flight.
    pub fn new(manager: Manager, max_commands: usize) -> Self {
        Self {
            manager,
            in_flight: Arc::new(Semaphore::new(max_commands)),
            limit: max_commands,
            tenants_in_flight: Arc::default(),
        }
    }

    fn admit(&self, tenant: &str) -> Result<Admission, Status> {
        let server = self.in_flight.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "this server runs {} commands at once, its limit; retry when one ends",
                self.limit
            ))
        })?;
        let Some(quota) = self.manager.quota(tenant).commands else {
            return Ok(Admission {
                _server: server,
                _tenant: None,
            });
        };
        let places = self
            .tenants_in_flight
            .lock()
            .expect("tenants in flight")
            .entry(tenant.to_owned())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    usize::try_from(quota).unwrap_or(Semaphore::MAX_PERMITS),
                ))
            })
            .clone();
        let tenant_place = places.try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "tenant {tenant} runs {quota} commands through this server, its quota \
                 commands; retry when one ends"
            ))
        })?;
        Ok(Admission {
            _server: server,
            _tenant: Some(tenant_place),
        })
    }

    async fn agent(
        &self,
        tenant: &str,
        sandbox_id: &str,
    ) -> Result<ExecServiceClient<Channel>, Status> {
        let channel = self.manager.agent(tenant, sandbox_id).await?;
        Ok(ExecServiceClient::new(channel)
            .max_decoding_message_size(AGENT_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(AGENT_MAX_MESSAGE_BYTES))
    }
}

/// Re-words an agent's error: the codes a caller can act on pass, anything
/// else is the agent being unreachable or broken.
pub(super) fn agent_status(status: Status) -> Status {
    let message: String = status
        .message()
        .chars()
        .take(MAX_AGENT_MESSAGE_CHARS)
        .collect();
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::OutOfRange
        | Code::FailedPrecondition
        | Code::ResourceExhausted
        | Code::DeadlineExceeded
        | Code::Cancelled => Status::new(status.code(), message),
        Code::Unavailable | Code::Unknown => {
            Status::unavailable(format!("the sandbox's agent cannot be reached: {message}"))
        }
        _ => Status::internal(format!("the sandbox's agent failed: {message}")),
    }
}

/// Blanks the values of a command's environment: they often hold secrets,
/// and whoever lists commands later need not see them (the keys stay).
fn hide_env_values(command: &mut pb::Command) {
    if let Some(spec) = &mut command.spec {
        spec.env.values_mut().for_each(String::clear);
    }
}

/// Runs a unary agent call under the agent deadline.
pub(super) async fn bounded<T>(
    call: impl Future<Output = Result<Response<T>, Status>>,
) -> Result<Response<T>, Status> {
    tokio::time::timeout(AGENT_CALL_DEADLINE, call)
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "the sandbox's agent did not answer within {}s",
                AGENT_CALL_DEADLINE.as_secs()
            ))
        })?
        .map_err(agent_status)
}

type ExecStream = Pin<Box<dyn Stream<Item = Result<pb::ExecResponse, Status>> + Send>>;

/// The relay of one Exec stream's answers: the agent's responses, or the
/// error that a malformed client message caused.
struct ExecRelay {
    manager: Manager,
    sandbox_id: String,
    responses: Streaming<pb::ExecResponse>,
    refused: Option<oneshot::Receiver<Refusal>>,
    /// The caller's request stream after a refusal, held until the answer
    /// ends: dropping it earlier would reset the stream before the caller
    /// reads the error.
    held_requests: Option<Streaming<pb::ExecRequest>>,
    ended: bool,
    _admission: Admission,
}

/// A malformed caller message: the error, and the request stream it came on.
type Refusal = (Status, Streaming<pb::ExecRequest>);

async fn relay_next(mut relay: ExecRelay) -> Option<(Result<pb::ExecResponse, Status>, ExecRelay)> {
    if relay.ended {
        return None;
    }
    let next = match relay.refused.as_mut() {
        Some(refused) => tokio::select! {
            biased;
            refusal = refused => {
                relay.refused = None;
                match refusal {
                    Ok((status, requests)) => {
                        relay.ended = true;
                        relay.held_requests = Some(requests);
                        return Some((Err(status), relay));
                    }
                    // The client finished sending; keep relaying answers.
                    Err(_) => relay.responses.message().await,
                }
            }
            message = relay.responses.message() => message,
        },
        None => relay.responses.message().await,
    };
    match next {
        Ok(Some(message)) => {
            // An open stream that moves data keeps its sandbox from idling out.
            if let Err(error) = relay.manager.note_activity(&relay.sandbox_id).await {
                tracing::warn!(sandbox_id = %relay.sandbox_id, %error, "cannot note activity");
            }
            Some((Ok(message), relay))
        }
        Ok(None) => None,
        Err(status) => {
            relay.ended = true;
            Some((Err(agent_status(status)), relay))
        }
    }
}

/// The caller's next valid message for the agent. A malformed one ends the
/// forwarding and is reported through `refuse`.
async fn next_follow_up(
    (mut inbound, refuse): (Streaming<pb::ExecRequest>, oneshot::Sender<Refusal>),
) -> Option<(
    pb::ExecRequest,
    (Streaming<pb::ExecRequest>, oneshot::Sender<Refusal>),
)> {
    let message = inbound.message().await.ok().flatten()?;
    match rules::exec_follow_up(&message) {
        Ok(()) => Some((message, (inbound, refuse))),
        Err(error) => {
            let _ = refuse.send((error.into(), inbound));
            None
        }
    }
}

#[tonic::async_trait]
impl ExecService for ExecApi {
    type ExecStream = ExecStream;

    async fn exec(
        &self,
        request: Request<Streaming<pb::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let caller = caller_of(&request);
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(FIRST_MESSAGE_DEADLINE, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded("no start or attach message arrived within 30s")
            })??
            .ok_or_else(|| {
                Status::invalid_argument("request: the stream ended before start or attach")
            })?;
        let (action, raw_sandbox_id, detail) = audit::exec_first(&first);
        let outcome = async {
            let sandbox_id = rules::exec_first(&first)?;
            let admission = self.admit(&caller.tenant)?;
            let mut agent = self.agent(&caller.tenant, &sandbox_id).await?;

            let (refuse, refused) = oneshot::channel::<Refusal>();
            let follow_ups = futures::stream::unfold((inbound, refuse), next_follow_up);
            let outbound = futures::stream::iter([first]).chain(follow_ups);
            let responses = agent
                .exec(outbound)
                .await
                .map_err(agent_status)?
                .into_inner();
            let relay = ExecRelay {
                manager: self.manager.clone(),
                sandbox_id,
                responses,
                refused: Some(refused),
                held_requests: None,
                ended: false,
                _admission: admission,
            };
            let stream: ExecStream = Box::pin(futures::stream::unfold(relay, relay_next));
            Ok(Response::new(stream))
        }
        .await;
        audit::record(&caller, action, &raw_sandbox_id, &detail, outcome)
    }

    async fn run_command(
        &self,
        request: Request<pb::RunCommandRequest>,
    ) -> Result<Response<pb::RunCommandResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let raw_sandbox_id = request.sandbox_id.clone();
        let detail = audit::command(&request.command, &request.shell);
        let outcome = async {
            let sandbox_id = rules::run_request(&request)?;
            let _admission = self.admit(&caller.tenant)?;
            let mut agent = self.agent(&caller.tenant, &sandbox_id).await?;
            agent.run_command(request).await.map_err(agent_status)
        }
        .await;
        audit::record(&caller, "run", &raw_sandbox_id, &detail, outcome)
    }

    async fn start_command(
        &self,
        request: Request<pb::StartCommandRequest>,
    ) -> Result<Response<pb::StartCommandResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let raw_sandbox_id = request.sandbox_id.clone();
        let detail = request
            .spec
            .as_ref()
            .map(|spec| audit::command(&spec.command, &spec.shell))
            .unwrap_or_default();
        let outcome = async {
            let sandbox_id = convert::sandbox_id("sandbox_id", request.sandbox_id.clone())?;
            rules::spec("spec.", request.spec.as_ref())?;
            let mut agent = self.agent(&caller.tenant, &sandbox_id).await?;
            let mut answer = bounded(agent.start_command(request)).await?;
            answer
                .get_mut()
                .command
                .iter_mut()
                .for_each(hide_env_values);
            Ok(answer)
        }
        .await;
        audit::record(&caller, "start command", &raw_sandbox_id, &detail, outcome)
    }

    async fn get_command(
        &self,
        request: Request<pb::GetCommandRequest>,
    ) -> Result<Response<pb::GetCommandResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let sandbox_id = convert::sandbox_id("sandbox_id", request.sandbox_id.clone())?;
        rules::command_id("command_id", &request.command_id)?;
        let mut agent = self.agent(&tenant, &sandbox_id).await?;
        let mut answer = bounded(agent.get_command(request)).await?;
        answer
            .get_mut()
            .command
            .iter_mut()
            .for_each(hide_env_values);
        Ok(answer)
    }

    async fn list_commands(
        &self,
        request: Request<pb::ListCommandsRequest>,
    ) -> Result<Response<pb::ListCommandsResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let sandbox_id = convert::sandbox_id("sandbox_id", request.sandbox_id.clone())?;
        for state in &request.states {
            match pb::CommandState::try_from(*state) {
                Ok(pb::CommandState::Unspecified) | Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "states: {state} is not a command state to filter by"
                    )));
                }
                Ok(_) => {}
            }
        }
        let mut agent = self.agent(&tenant, &sandbox_id).await?;
        let mut answer = bounded(agent.list_commands(request)).await?;
        answer
            .get_mut()
            .commands
            .iter_mut()
            .for_each(hide_env_values);
        Ok(answer)
    }

    async fn signal_command(
        &self,
        request: Request<pb::SignalCommandRequest>,
    ) -> Result<Response<pb::SignalCommandResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let raw_sandbox_id = request.sandbox_id.clone();
        let detail = format!("{} {}", request.signal, request.command_id);
        let outcome = async {
            let sandbox_id = convert::sandbox_id("sandbox_id", request.sandbox_id.clone())?;
            rules::command_id("command_id", &request.command_id)?;
            rules::signal("signal", &request.signal)?;
            let mut agent = self.agent(&caller.tenant, &sandbox_id).await?;
            bounded(agent.signal_command(request)).await
        }
        .await;
        audit::record(&caller, "signal", &raw_sandbox_id, &detail, outcome)
    }

    async fn kill_processes(
        &self,
        request: Request<pb::KillProcessesRequest>,
    ) -> Result<Response<pb::KillProcessesResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let raw_sandbox_id = request.sandbox_id.clone();
        let detail = request.signal.clone();
        let outcome = async {
            let sandbox_id = convert::sandbox_id("sandbox_id", request.sandbox_id.clone())?;
            if !request.signal.is_empty() {
                rules::signal("signal", &request.signal)?;
            }
            let mut agent = self.agent(&caller.tenant, &sandbox_id).await?;
            bounded(agent.kill_processes(request)).await
        }
        .await;
        audit::record(&caller, "kill processes", &raw_sandbox_id, &detail, outcome)
    }
}

/// Asks a sandbox's agent whether commands still run in it, so that the
/// reaper does not stop a sandbox busy with a detached command.
pub struct AgentBusyCheck {
    manager: Manager,
}

impl AgentBusyCheck {
    /// A check through the agents `manager` reaches.
    pub fn new(manager: Manager) -> Self {
        Self { manager }
    }
}

#[tonic::async_trait]
impl crate::sandbox::BusyCheck for AgentBusyCheck {
    async fn is_busy(&self, tenant: &str, sandbox_id: &str) -> bool {
        let Ok(channel) = self.manager.running_agent(tenant, sandbox_id).await else {
            return false;
        };
        let mut agent =
            ExecServiceClient::new(channel).max_decoding_message_size(AGENT_MAX_MESSAGE_BYTES);
        let running = bounded(agent.list_commands(pb::ListCommandsRequest {
            sandbox_id: sandbox_id.to_owned(),
            states: vec![pb::CommandState::Running as i32],
        }))
        .await;
        running.is_ok_and(|r| !r.into_inner().commands.is_empty())
    }
}
