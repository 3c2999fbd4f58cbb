//! The agent's `paddock.v1.ExecService`: the control plane relays callers'
//! exec calls here, after authenticating them and checking the sandbox.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::command::Command;
use super::output::{Item, Stream as OutputStream};
use super::state::Agent;
use crate::pb;
use crate::pb::exec_service_server::ExecService;
use crate::signals;

/// The stdout and stderr bytes RunCommand returns when the request sets no cap.
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;

type ExecStream = Pin<Box<dyn Stream<Item = Result<pb::ExecResponse, Status>> + Send>>;

/// The agent's exec service.
#[derive(Clone)]
pub struct AgentExec {
    agent: Arc<Agent>,
}

impl AgentExec {
    /// The service over `agent`.
    pub fn new(agent: Arc<Agent>) -> Self {
        Self { agent }
    }
}

fn io_status(context: &str, error: std::io::Error) -> Status {
    Status::internal(format!("{context}: {error}"))
}

fn output_stream(stream: OutputStream) -> pb::OutputStream {
    match stream {
        OutputStream::Stdout => pb::OutputStream::Stdout,
        OutputStream::Stderr => pb::OutputStream::Stderr,
        OutputStream::Pty => pb::OutputStream::Pty,
    }
}

fn exited(record: &pb::Command) -> pb::ExecExited {
    let time =
        |t: Option<prost_types::Timestamp>| t.and_then(|t| std::time::SystemTime::try_from(t).ok());
    let duration = match (time(record.start_time), time(record.end_time)) {
        (Some(start), Some(end)) => {
            prost_types::Duration::try_from(end.duration_since(start).unwrap_or_default()).ok()
        }
        _ => None,
    };
    pb::ExecExited {
        exit_code: record.exit_code,
        signal: record.signal.clone(),
        timed_out: record.timed_out,
        duration,
    }
}

/// Applies one follow-up message of an Exec stream to its command.
async fn apply(command: &Command, request: pb::exec_request::Request) -> Result<(), Status> {
    use pb::exec_request::Request as R;
    match request {
        R::Stdin(data) => command
            .write_stdin(&data)
            .await
            .map_err(|e| io_status("writing stdin", e)),
        R::CloseStdin(_) => command
            .close_stdin()
            .await
            .map_err(|e| io_status("closing stdin", e)),
        R::Resize(pb::Resize { rows, cols }) => command
            .resize(rows as u16, cols as u16)
            .map_err(|e| io_status("resizing the terminal", e)),
        R::Signal(pb::Signal { name }) => {
            let signal = signals::parse(&name)
                .ok_or_else(|| Status::invalid_argument(format!("signal: {name:?} is unknown")))?;
            command
                .signal(signal)
                .map_err(|e| io_status("signalling", e))
        }
        R::Start(_) | R::Attach(_) => Err(Status::invalid_argument(
            "start and attach may only be the first message of an Exec stream",
        )),
    }
}

#[tonic::async_trait]
impl ExecService for AgentExec {
    type ExecStream = ExecStream;

    async fn exec(
        &self,
        request: Request<Streaming<pb::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        use pb::exec_request::Request as R;
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .and_then(|m| m.request)
            .ok_or_else(|| Status::invalid_argument("the first message must be start or attach"))?;
        // A started command is held in memory while this stream follows it
        // (see Command::hold); an attached one stays where it is.
        let (command, hold, after_seq, kill_on_disconnect) = match first {
            R::Start(pb::ExecStart {
                sandbox_id: _,
                spec,
                on_disconnect,
            }) => {
                let spec =
                    spec.ok_or_else(|| Status::invalid_argument("start.spec: is required"))?;
                let command = self.agent.launch(spec, true)?;
                let hold = command.hold();
                let kill = on_disconnect == pb::OnDisconnect::Kill as i32;
                (command, Some(hold), 0, kill)
            }
            R::Attach(pb::ExecAttach {
                sandbox_id: _,
                command_id,
                after_seq,
            }) => (self.agent.command(&command_id)?, None, after_seq, false),
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be start or attach",
                ));
            }
        };

        let (tx, rx) = mpsc::channel(4);
        {
            let command = command.clone();
            tokio::spawn(async move {
                while let Ok(Some(message)) = inbound.message().await {
                    let Some(request) = message.request else {
                        continue;
                    };
                    if let Err(status) = apply(&command, request).await {
                        debug!(command_id = %command.id, %status, "exec request not applied");
                    }
                }
            });
        }
        let agent = self.agent.clone();
        tokio::spawn(async move {
            let started = pb::ExecResponse {
                response: Some(pb::exec_response::Response::Started(pb::ExecStarted {
                    command_id: command.id.clone(),
                })),
            };
            if tx.send(Ok(started)).await.is_err() {
                return;
            }
            let mut reader = command.log.reader(after_seq, true);
            loop {
                let item = tokio::select! {
                    item = reader.next() => item,
                    () = tx.closed() => {
                        if kill_on_disconnect {
                            let _ = command.signal(libc::SIGKILL);
                        }
                        return;
                    }
                };
                let response = match item {
                    Ok(Some(Item::Chunk { seq, stream, data })) => {
                        pb::exec_response::Response::Output(pb::ExecOutput {
                            stream: output_stream(stream) as i32,
                            data,
                            seq,
                        })
                    }
                    Ok(Some(Item::Lost { first, last })) => {
                        pb::exec_response::Response::OutputLost(pb::ExecOutputLost {
                            first_seq: first,
                            last_seq: last,
                        })
                    }
                    Ok(None) => break,
                    Err(error) => {
                        let _ = tx
                            .send(Err(io_status("reading the output log", error)))
                            .await;
                        return;
                    }
                };
                let message = pb::ExecResponse {
                    response: Some(response),
                };
                if tx.send(Ok(message)).await.is_err() {
                    if kill_on_disconnect {
                        let _ = command.signal(libc::SIGKILL);
                    }
                    return;
                }
            }
            command.ended().await;
            let exited = pb::ExecResponse {
                response: Some(pb::exec_response::Response::Exited(exited(
                    &command.record(),
                ))),
            };
            if tx.send(Ok(exited)).await.is_ok()
                && let Some(hold) = hold
            {
                agent.delivered(&command, hold);
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn run_command(
        &self,
        request: Request<pb::RunCommandRequest>,
    ) -> Result<Response<pb::RunCommandResponse>, Status> {
        let pb::RunCommandRequest {
            sandbox_id: _,
            spec,
            stdin,
            max_output_bytes,
        } = request.into_inner();
        let spec = spec.ok_or_else(|| Status::invalid_argument("spec: is required"))?;
        if spec.tty {
            return Err(Status::invalid_argument(
                "spec.tty: RunCommand runs no terminal; use Exec for one",
            ));
        }
        let cap = match max_output_bytes {
            n if n <= 0 => DEFAULT_MAX_OUTPUT_BYTES,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let command = self.agent.launch(spec, true)?;
        // Held in memory while this call waits (see Command::hold).
        let hold = command.hold();
        if stdin.is_empty() {
            let _ = command.close_stdin().await;
        } else {
            // Written beside the output's reading: a command may answer
            // before it has read everything.
            let command = command.clone();
            tokio::spawn(async move {
                let _ = command.write_stdin(&stdin).await;
                let _ = command.close_stdin().await;
            });
        }
        let mut response = pb::RunCommandResponse {
            command_id: command.id.clone(),
            ..Default::default()
        };
        let mut reader = command.log.reader(0, true);
        while let Some(item) = reader
            .next()
            .await
            .map_err(|e| io_status("reading the output log", e))?
        {
            let Item::Chunk { stream, data, .. } = item else {
                continue;
            };
            let (buffer, truncated) = match stream {
                OutputStream::Stderr => (&mut response.stderr, &mut response.stderr_truncated),
                _ => (&mut response.stdout, &mut response.stdout_truncated),
            };
            let room = cap.saturating_sub(buffer.len());
            if data.len() > room {
                *truncated = true;
            }
            buffer.extend_from_slice(&data[..data.len().min(room)]);
        }
        command.ended().await;
        let ended = exited(&command.record());
        response.exit_code = ended.exit_code;
        response.signal = ended.signal;
        response.timed_out = ended.timed_out;
        response.duration = ended.duration;
        self.agent.delivered(&command, hold);
        Ok(Response::new(response))
    }

    async fn start_command(
        &self,
        request: Request<pb::StartCommandRequest>,
    ) -> Result<Response<pb::StartCommandResponse>, Status> {
        let pb::StartCommandRequest {
            sandbox_id: _,
            spec,
        } = request.into_inner();
        let spec = spec.ok_or_else(|| Status::invalid_argument("spec: is required"))?;
        let command = self.agent.launch(spec, false)?;
        Ok(Response::new(pb::StartCommandResponse {
            command: Some(command.record()),
        }))
    }

    async fn get_command(
        &self,
        request: Request<pb::GetCommandRequest>,
    ) -> Result<Response<pb::GetCommandResponse>, Status> {
        let command = self.agent.command(&request.into_inner().command_id)?;
        Ok(Response::new(pb::GetCommandResponse {
            command: Some(command.record()),
        }))
    }

    async fn list_commands(
        &self,
        request: Request<pb::ListCommandsRequest>,
    ) -> Result<Response<pb::ListCommandsResponse>, Status> {
        let pb::ListCommandsRequest {
            sandbox_id: _,
            states,
        } = request.into_inner();
        let commands = self
            .agent
            .commands()
            .into_iter()
            .rev()
            .map(|c| c.record())
            .filter(|r| states.is_empty() || states.contains(&r.state))
            .collect();
        Ok(Response::new(pb::ListCommandsResponse { commands }))
    }

    async fn signal_command(
        &self,
        request: Request<pb::SignalCommandRequest>,
    ) -> Result<Response<pb::SignalCommandResponse>, Status> {
        let pb::SignalCommandRequest {
            sandbox_id: _,
            command_id,
            signal,
        } = request.into_inner();
        let number = signals::parse(&signal)
            .ok_or_else(|| Status::invalid_argument(format!("signal: {signal:?} is unknown")))?;
        let command = self.agent.command(&command_id)?;
        if !command.is_running() {
            return Err(Status::failed_precondition(format!(
                "command {command_id} has ended; there is nothing to signal"
            )));
        }
        command
            .signal(number)
            .map_err(|e| io_status("signalling", e))?;
        Ok(Response::new(pb::SignalCommandResponse {
            command: Some(command.record()),
        }))
    }

    async fn kill_processes(
        &self,
        request: Request<pb::KillProcessesRequest>,
    ) -> Result<Response<pb::KillProcessesResponse>, Status> {
        let pb::KillProcessesRequest {
            sandbox_id: _,
            signal,
        } = request.into_inner();
        let number = if signal.is_empty() {
            libc::SIGKILL
        } else {
            signals::parse(&signal)
                .ok_or_else(|| Status::invalid_argument(format!("signal: {signal:?} is unknown")))?
        };
        let mut signalled = 0;
        if std::process::id() == 1 {
            // The agent is the init of its own PID namespace: reach every
            // process in it, those that left their command's group too, but
            // not the bridges carrying calls to it.
            self.agent.signal_every_process(number);
        }
        for command in self.agent.commands() {
            if command.is_running() {
                command
                    .signal(number)
                    .map_err(|e| io_status("signalling", e))?;
                signalled += 1;
            }
        }
        Ok(Response::new(pb::KillProcessesResponse { signalled }))
    }
}
