//! `paddock.v1.ExecService`: validates each call, checks the sandbox, and
//! relays it to the sandbox's agent (through [`crate::agent_client`], which
//! bounds what the agent sends), which runs the command.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

use super::audit;
use super::auth::{caller_of, tenant_of};
use super::convert::{self, exec as rules};
use crate::agent_client::AgentStream;
use crate::pb;
use crate::pb::exec_service_server::ExecService;
use crate::sandbox::{CommandAdmission, Manager};

/// How long an Exec stream may take to send its first message.
const FIRST_MESSAGE_DEADLINE: Duration = Duration::from_secs(30);

/// The exec service.
#[derive(Clone)]
pub struct ExecApi {
    manager: Manager,
}

impl ExecApi {
    /// A service relaying to the agents `manager` reaches.
    pub fn new(manager: Manager) -> Self {
        Self { manager }
    }
}

type ExecStream = Pin<Box<dyn Stream<Item = Result<pb::ExecResponse, Status>> + Send>>;

/// The relay of one Exec stream's answers: the agent's responses, or the
/// error that a malformed client message caused.
struct ExecRelay {
    manager: Manager,
    sandbox_id: String,
    responses: AgentStream<pb::ExecResponse>,
    refused: Option<oneshot::Receiver<Refusal>>,
    /// The caller's request stream after a refusal, held until the answer
    /// ends: dropping it earlier would reset the stream before the caller
    /// reads the error.
    held_requests: Option<Streaming<pb::ExecRequest>>,
    ended: bool,
    _admission: CommandAdmission,
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
                    Err(_) => relay.responses.next().await,
                }
            }
            message = relay.responses.next() => message,
        },
        None => relay.responses.next().await,
    };
    match next {
        Some(Ok(message)) => {
            // An open stream that moves data keeps its sandbox from idling out.
            if let Err(error) = relay.manager.note_activity(&relay.sandbox_id).await {
                tracing::warn!(sandbox_id = %relay.sandbox_id, %error, "cannot note activity");
            }
            Some((Ok(message), relay))
        }
        None => None,
        Some(Err(error)) => {
            relay.ended = true;
            Some((Err(error.into()), relay))
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
            let admission = self.manager.admit_command(&caller.tenant)?;
            let agent = self.manager.agent(&caller.tenant, &sandbox_id).await?;

            let (refuse, refused) = oneshot::channel::<Refusal>();
            let follow_ups = futures::stream::unfold((inbound, refuse), next_follow_up);
            let outbound = futures::stream::iter([first]).chain(follow_ups);
            let responses = agent.exec(outbound).await?;
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
            let _admission = self.manager.admit_command(&caller.tenant)?;
            let agent = self.manager.agent(&caller.tenant, &sandbox_id).await?;
            Ok(Response::new(agent.run_command(request).await?))
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
            let agent = self.manager.agent(&caller.tenant, &sandbox_id).await?;
            Ok(Response::new(agent.start_command(request).await?))
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
        let agent = self.manager.agent(&tenant, &sandbox_id).await?;
        Ok(Response::new(agent.get_command(request).await?))
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
        let agent = self.manager.agent(&tenant, &sandbox_id).await?;
        Ok(Response::new(agent.list_commands(request).await?))
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
            let agent = self.manager.agent(&caller.tenant, &sandbox_id).await?;
            Ok(Response::new(agent.signal_command(request).await?))
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
            let agent = self.manager.agent(&caller.tenant, &sandbox_id).await?;
            Ok(Response::new(agent.kill_processes(request).await?))
        }
        .await;
        audit::record(&caller, "kill processes", &raw_sandbox_id, &detail, outcome)
    }
}
