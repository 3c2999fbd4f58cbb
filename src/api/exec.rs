//! `paddock.v1.ExecService`: validates each call, checks the sandbox, and
//! relays it to the sandbox's agent (through [`crate::agent_client`], which
//! bounds what the agent sends), which runs the command.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{oneshot, watch};
use tonic::{Request, Response, Status, Streaming};

use super::audit::{self, audited, unaudited};
use super::auth::caller_of;
use super::convert::exec as rules;
use super::sandbox::shutdown_begun;
use crate::agent_client::AgentStream;
use crate::pb;
use crate::pb::exec_service_server::ExecService;
use crate::sandbox::{CommandAdmission, Manager};
use crate::telemetry::{CommandKind, Direction, Metrics};

/// How long an Exec stream may take to send its first message.
const FIRST_MESSAGE_DEADLINE: Duration = Duration::from_secs(30);

/// The exec service.
#[derive(Clone)]
pub struct ExecApi {
    manager: Manager,
    shutdown: watch::Receiver<bool>,
}

impl ExecApi {
    /// A service relaying to the agents `manager` reaches. Open Exec
    /// streams end with UNAVAILABLE when `shutdown` becomes true, naming
    /// their command, which goes on running for a client to attach to again.
    pub fn new(manager: Manager, shutdown: watch::Receiver<bool>) -> Self {
        Self { manager, shutdown }
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
    /// Completes when the server begins shutting down.
    stopping: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The command the stream is bound to, once the agent said.
    command_id: Option<String>,
    /// Whether the command is killed when this stream ends (it was started
    /// with `on_disconnect` KILL).
    killed_on_leave: bool,
    _admission: CommandAdmission,
}

/// A malformed caller message: the error, and the request stream it came on.
type Refusal = (Status, Streaming<pb::ExecRequest>);

/// What forwards an Exec stream's follow-up messages: the caller's stream,
/// where a refusal goes, and where the stdin bytes are counted.
type FollowUps = (
    Streaming<pb::ExecRequest>,
    oneshot::Sender<Refusal>,
    Arc<Metrics>,
);

async fn relay_next(mut relay: ExecRelay) -> Option<(Result<pb::ExecResponse, Status>, ExecRelay)> {
    if relay.ended {
        return None;
    }
    let next = tokio::select! {
        biased;
        () = relay.stopping.as_mut() => {
            Err(shutting_down(relay.command_id.as_deref(), relay.killed_on_leave))
        }
        next = next_answer(
            &mut relay.refused,
            &mut relay.held_requests,
            &mut relay.responses,
        ) => next,
    };
    match next {
        Ok(Some(Ok(message))) => {
            if let Some(pb::exec_response::Response::Started(started)) = &message.response {
                relay.command_id = Some(started.command_id.clone());
            }
            if let Some(pb::exec_response::Response::Output(output)) = &message.response {
                let direction = if output.stream == pb::OutputStream::Stderr as i32 {
                    Direction::Stderr
                } else {
                    Direction::Stdout
                };
                relay
                    .manager
                    .metrics()
                    .bytes_moved(direction, output.data.len() as u64);
            }
            // An open stream that moves data keeps its sandbox from idling out.
            if let Err(error) = relay.manager.note_activity(&relay.sandbox_id).await {
                tracing::warn!(sandbox_id = %relay.sandbox_id, %error, "cannot note activity");
            }
            Some((Ok(message), relay))
        }
        Ok(None) => None,
        Ok(Some(Err(error))) => {
            relay.ended = true;
            Some((Err(error.into()), relay))
        }
        Err(status) => {
            relay.ended = true;
            Some((Err(status), relay))
        }
    }
}

/// The agent's next answer, or the refusal of a malformed caller message
/// (whose request stream is then held in `held_requests`).
async fn next_answer(
    refused: &mut Option<oneshot::Receiver<Refusal>>,
    held_requests: &mut Option<Streaming<pb::ExecRequest>>,
    responses: &mut AgentStream<pb::ExecResponse>,
) -> Result<Option<crate::error::Result<pb::ExecResponse>>, Status> {
    let Some(refusal) = refused.as_mut() else {
        return Ok(responses.next().await);
    };
    tokio::select! {
        biased;
        refusal = refusal => {
            *refused = None;
            match refusal {
                Ok((status, requests)) => {
                    *held_requests = Some(requests);
                    Err(status)
                }
                // The client finished sending; keep relaying answers.
                Err(_) => Ok(responses.next().await),
            }
        }
        message = responses.next() => Ok(message),
    }
}

/// Why an Exec stream ends at shutdown, and how to pick up its command
/// (unless it was started to be killed when its caller goes).
fn shutting_down(command_id: Option<&str>, killed_on_leave: bool) -> Status {
    Status::unavailable(match command_id {
        Some(id) if killed_on_leave => format!(
            "the server is shutting down; command {id} was started with on_disconnect KILL, \
             so it ends with this stream: run it again through another server, or this one \
             once it is back"
        ),
        Some(id) => format!(
            "the server is shutting down; command {id} goes on: attach to it again with an \
             Exec attach of command_id {id} through another server, or this one once it is back"
        ),
        None => "the server is shutting down before the command started; try again through \
                 another server, or this one once it is back"
            .to_owned(),
    })
}

/// The caller's next valid message for the agent. A malformed one, or one
/// that does not decode, ends the forwarding and is reported through
/// `refuse`, so that the caller's stream ends with the reason instead of
/// waiting on a command that will never hear from it again.
async fn next_follow_up(
    (mut inbound, refuse, metrics): FollowUps,
) -> Option<(pb::ExecRequest, FollowUps)> {
    let refusal = match inbound.message().await {
        Ok(Some(message)) => match rules::exec_follow_up(&message) {
            Ok(()) => {
                if let Some(pb::exec_request::Request::Stdin(bytes)) = &message.request {
                    metrics.bytes_moved(Direction::Stdin, bytes.len() as u64);
                }
                return Some((message, (inbound, refuse, metrics)));
            }
            Err(error) => error.into(),
        },
        Ok(None) => return None,
        Err(status) => status,
    };
    let _ = refuse.send((refusal, inbound));
    None
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
        let entry = audit::Entry::new(&caller, &first);
        let outcome = async {
            let sandbox_id = rules::exec_first(&first)?;
            let admission = self.manager.admit_command(&caller.tenant)?;
            let agent = self.manager.agent(&caller.tenant, &sandbox_id).await?;

            let (refuse, refused) = oneshot::channel::<Refusal>();
            let starts = matches!(first.request, Some(pb::exec_request::Request::Start(_)));
            let killed_on_leave = matches!(
                &first.request,
                Some(pb::exec_request::Request::Start(start))
                    if start.on_disconnect == pb::OnDisconnect::Kill as i32
            );
            let metrics = self.manager.metrics().clone();
            let follow_ups = futures::stream::unfold((inbound, refuse, metrics), next_follow_up);
            let outbound = futures::stream::iter([first]).chain(follow_ups);
            let responses = agent.exec(outbound).await?;
            if starts {
                self.manager.metrics().command_started(CommandKind::Exec);
            }
            let relay = ExecRelay {
                manager: self.manager.clone(),
                sandbox_id,
                responses,
                refused: Some(refused),
                held_requests: None,
                ended: false,
                stopping: Box::pin(shutdown_begun(self.shutdown.clone())),
                command_id: None,
                killed_on_leave,
                _admission: admission,
            };
            let stream: ExecStream = Box::pin(futures::stream::unfold(relay, relay_next));
            Ok(Response::new(stream))
        }
        .await;
        entry.record(outcome)
    }

    async fn run_command(
        &self,
        request: Request<pb::RunCommandRequest>,
    ) -> Result<Response<pb::RunCommandResponse>, Status> {
        audited(request, async |caller, request| {
            let sandbox_id = rules::run_request(&request)?;
            let _admission = self.manager.admit_command(&caller.tenant)?;
            let agent = self.manager.agent(&caller.tenant, &sandbox_id).await?;
            let metrics = self.manager.metrics();
            metrics.command_started(CommandKind::Run);
            let answer = agent.run_command(request).await?;
            metrics.bytes_moved(Direction::Stdout, answer.stdout.len() as u64);
            metrics.bytes_moved(Direction::Stderr, answer.stderr.len() as u64);
            Ok(answer)
        })
        .await
    }

    async fn start_command(
        &self,
        request: Request<pb::StartCommandRequest>,
    ) -> Result<Response<pb::StartCommandResponse>, Status> {
        audited(request, async |caller, request| {
            let sandbox_id = rules::start_command(&request)?;
            let agent = self.manager.agent(&caller.tenant, &sandbox_id).await?;
            let started = agent.start_command(request).await?;
            self.manager
                .metrics()
                .command_started(CommandKind::Detached);
            Ok(started)
        })
        .await
    }

    async fn get_command(
        &self,
        request: Request<pb::GetCommandRequest>,
    ) -> Result<Response<pb::GetCommandResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let sandbox_id = rules::get_command(&request)?;
            let agent = self.manager.agent(&tenant, &sandbox_id).await?;
            agent.get_command(request).await
        })
        .await
    }

    async fn list_commands(
        &self,
        request: Request<pb::ListCommandsRequest>,
    ) -> Result<Response<pb::ListCommandsResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let sandbox_id = rules::list_commands(&request)?;
            let agent = self.manager.agent(&tenant, &sandbox_id).await?;
            agent.list_commands(request).await
        })
        .await
    }

    async fn signal_command(
        &self,
        request: Request<pb::SignalCommandRequest>,
    ) -> Result<Response<pb::SignalCommandResponse>, Status> {
        audited(request, async |caller, request| {
            let sandbox_id = rules::signal_command(&request)?;
            let agent = self.manager.agent(&caller.tenant, &sandbox_id).await?;
            agent.signal_command(request).await
        })
        .await
    }

    async fn kill_processes(
        &self,
        request: Request<pb::KillProcessesRequest>,
    ) -> Result<Response<pb::KillProcessesResponse>, Status> {
        audited(request, async |caller, request| {
            let sandbox_id = rules::kill_processes(&request)?;
            let agent = self.manager.agent(&caller.tenant, &sandbox_id).await?;
            agent.kill_processes(request).await
        })
        .await
    }
}
