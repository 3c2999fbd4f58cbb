//! The control plane's side of its talk with the agents inside sandboxes:
//! the one module that speaks to them.
//!
//! An agent runs beside code nobody has read, so it is untrusted: every
//! message read from it is bounded in size, calls that answer at once have
//! a deadline, its errors become domain errors with bounded messages
//! (errors.rs), and the environment values it keeps for commands (often
//! secrets) never come back to callers.
//!
//! Providers make [`AgentChannel`]s, the domain keeps one [`AgentClient`]
//! per running sandbox, and the API calls through it. This module depends
//! only on the wire types and the domain's error, never on the domain.

mod channel;
mod errors;
mod traced;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tonic::transport::Channel;
use tonic::{Response, Status};

use crate::error::{Error, ErrorKind, Result};
use crate::pb;
use crate::pb::exec_service_client::ExecServiceClient;
use crate::pb::file_service_client::FileServiceClient;
use crate::pb::port_service_client::PortServiceClient;

pub use channel::AgentChannel;
use traced::Traced;

/// The largest message read from or sent to an agent: a RunCommand answer
/// with both capped outputs, or one output chunk, with room to spare.
const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// The deadline of the agent calls that answer at once.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// A stream of an agent's answers, its errors already domain errors.
pub type AgentStream<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send>>;

/// The calls a sandbox's agent serves, each bounded as the module docs say.
/// Cheap to clone: clones share the agent's connection.
#[derive(Clone)]
pub struct AgentClient {
    exec: ExecServiceClient<Traced<Channel>>,
    files: FileServiceClient<Traced<Channel>>,
    ports: PortServiceClient<Traced<Channel>>,
    /// Environment variables every command started through this client
    /// gets, under its own (see [`AgentClient::with_command_env`]).
    command_env: Arc<BTreeMap<String, String>>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").finish_non_exhaustive()
    }
}

/// Unary calls that answer at once, under [`CALL_DEADLINE`].
macro_rules! bounded_calls {
    ($($client:ident.$name:ident($request:ident) -> $response:ident;)*) => {
        $(
            #[doc = concat!("`", stringify!($request), "`, answered within the agent call deadline.")]
            pub async fn $name(&self, request: pb::$request) -> Result<pb::$response> {
                bounded(self.$client.clone().$name(request)).await
            }
        )*
    };
}

impl AgentClient {
    /// A client speaking through `channel`.
    pub fn new(channel: AgentChannel) -> Self {
        let channel = Traced::new(channel.channel);
        Self {
            exec: ExecServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            files: FileServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            ports: PortServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            command_env: Arc::default(),
        }
    }

    /// This client, adding `env` to the environment of every command it
    /// starts (Exec, RunCommand, StartCommand); a command's own variables
    /// win. For env the sandbox's processes lack: a warm sandbox's claim.
    #[must_use]
    pub fn with_command_env(self, env: &BTreeMap<String, String>) -> Self {
        if *self.command_env == *env {
            return self;
        }
        Self {
            command_env: Arc::new(env.clone()),
            ..self
        }
    }

    /// Fills `spec`'s environment in from [`AgentClient::with_command_env`].
    fn add_command_env(&self, spec: Option<&mut pb::CommandSpec>) {
        if let Some(spec) = spec {
            for (key, value) in self.command_env.iter() {
                spec.env.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }

    /// Opens an Exec stream: `requests` go to the agent as they come, its
    /// answers come back. No deadline: a command runs as long as it runs.
    pub async fn exec(
        &self,
        requests: impl Stream<Item = pb::ExecRequest> + Send + 'static,
    ) -> Result<AgentStream<pb::ExecResponse>> {
        let with_env = self.clone();
        let requests = requests.map(move |mut request| {
            if let Some(pb::exec_request::Request::Start(start)) = &mut request.request {
                with_env.add_command_env(start.spec.as_mut());
            }
            request
        });
        let answers = self
            .exec
            .clone()
            .exec(requests)
            .await
            .map_err(errors::from_agent)?;
        Ok(relayed(answers.into_inner()))
    }

    /// Opens a PortForward stream: `requests` (`start` first) go to the
    /// agent, which dials the port inside the sandbox. Opening it is bounded
    /// by the call deadline (the dial included); then it lasts as long as
    /// the connection.
    pub async fn port_forward(
        &self,
        requests: impl Stream<Item = pb::PortForwardRequest> + Send + 'static,
    ) -> Result<AgentStream<pb::PortForwardResponse>> {
        Ok(relayed(
            bounded(self.ports.clone().port_forward(requests)).await?,
        ))
    }

    /// Runs a command to its end. No deadline beyond the command's own.
    pub async fn run_command(
        &self,
        mut request: pb::RunCommandRequest,
    ) -> Result<pb::RunCommandResponse> {
        self.add_command_env(request.spec.as_mut());
        self.exec
            .clone()
            .run_command(request)
            .await
            .map(Response::into_inner)
            .map_err(errors::from_agent)
    }

    /// Runs `shell` with the sandbox's shell in its workdir to its end, as
    /// a template's setup: `Ok` when it exited 0, else FAILED_PRECONDITION
    /// saying how it ended and the end of what it printed.
    pub async fn run_setup(&self, sandbox_id: &str, shell: &str) -> Result<()> {
        const SHOWN_BYTES: usize = 2048;
        let ran = self
            .run_command(pb::RunCommandRequest {
                sandbox_id: sandbox_id.to_owned(),
                spec: Some(pb::CommandSpec {
                    shell: shell.to_owned(),
                    // A setup that hangs must not hold the create forever.
                    timeout: Some(prost_types::Duration {
                        seconds: 30 * 60,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                max_output_bytes: 64 << 10,
                ..Default::default()
            })
            .await?;
        if ran.exit_code == Some(0) {
            return Ok(());
        }
        let ended = match (ran.exit_code, ran.signal.as_str()) {
            _ if ran.timed_out => "ran out of its 30 minutes".to_owned(),
            (Some(code), _) => format!("exited with {code}"),
            (None, signal) => format!("was ended by {signal}"),
        };
        let mut output = String::from_utf8_lossy(&ran.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&ran.stderr));
        let output = output.trim();
        let cut = output.len().saturating_sub(SHOWN_BYTES);
        let start = (cut..=output.len())
            .find(|&i| output.is_char_boundary(i))
            .unwrap_or(output.len());
        Err(crate::error::Error::failed_precondition(format!(
            "the template's setup command {ended}: {}",
            &output[start..]
        )))
    }

    /// Starts a detached command; its environment values come back blank.
    pub async fn start_command(
        &self,
        mut request: pb::StartCommandRequest,
    ) -> Result<pb::StartCommandResponse> {
        self.add_command_env(request.spec.as_mut());
        let mut answer = bounded(self.exec.clone().start_command(request)).await?;
        answer.command.iter_mut().for_each(hide_env_values);
        Ok(answer)
    }

    /// A command's record; its environment values come back blank.
    pub async fn get_command(
        &self,
        request: pb::GetCommandRequest,
    ) -> Result<pb::GetCommandResponse> {
        let mut answer = bounded(self.exec.clone().get_command(request)).await?;
        answer.command.iter_mut().for_each(hide_env_values);
        Ok(answer)
    }

    /// Command records; their environment values come back blank.
    pub async fn list_commands(
        &self,
        request: pb::ListCommandsRequest,
    ) -> Result<pb::ListCommandsResponse> {
        let mut answer = bounded(self.exec.clone().list_commands(request)).await?;
        answer.commands.iter_mut().for_each(hide_env_values);
        Ok(answer)
    }

    bounded_calls! {
        exec.signal_command(SignalCommandRequest) -> SignalCommandResponse;
        exec.kill_processes(KillProcessesRequest) -> KillProcessesResponse;
        files.stat(StatRequest) -> StatResponse;
        files.list_dir(ListDirRequest) -> ListDirResponse;
        files.make_dir(MakeDirRequest) -> MakeDirResponse;
        files.remove(RemoveRequest) -> RemoveResponse;
        files.r#move(MoveRequest) -> MoveResponse;
        files.read_file(ReadFileRequest) -> ReadFileResponse;
        files.write_file(WriteFileRequest) -> WriteFileResponse;
        files.edit_file(EditFileRequest) -> EditFileResponse;
        files.find_files(FindFilesRequest) -> FindFilesResponse;
        files.grep(GrepRequest) -> GrepResponse;
    }

    /// Whether the agent answers a call for sandbox `sandbox_id`: the
    /// readiness check of providers that start agents.
    pub async fn answers(&self, sandbox_id: &str) -> Result<()> {
        self.list_commands(pb::ListCommandsRequest {
            sandbox_id: sandbox_id.to_owned(),
            states: Vec::new(),
        })
        .await
        .map(drop)
    }

    /// Whether commands still run in sandbox `sandbox_id` (a detached one
    /// keeps its sandbox busy). An agent that does not answer is not busy.
    pub async fn is_busy(&self, sandbox_id: &str) -> bool {
        self.list_commands(pb::ListCommandsRequest {
            sandbox_id: sandbox_id.to_owned(),
            states: vec![pb::CommandState::Running as i32],
        })
        .await
        .is_ok_and(|running| !running.commands.is_empty())
    }

    /// Writes a file from `requests` (its header, then chunks). No deadline:
    /// the caller's stream sets the pace.
    pub async fn upload(
        &self,
        requests: impl Stream<Item = pb::UploadRequest> + Send + 'static,
    ) -> Result<pb::UploadResponse> {
        self.files
            .clone()
            .upload(requests)
            .await
            .map(Response::into_inner)
            .map_err(errors::from_agent)
    }

    /// Unpacks a tree from `requests` (its header, then chunks). No
    /// deadline, as for [`AgentClient::upload`].
    pub async fn upload_archive(
        &self,
        requests: impl Stream<Item = pb::UploadArchiveRequest> + Send + 'static,
    ) -> Result<pb::UploadArchiveResponse> {
        self.files
            .clone()
            .upload_archive(requests)
            .await
            .map(Response::into_inner)
            .map_err(errors::from_agent)
    }

    /// A file's info, then its chunks. The stream must open within the
    /// call deadline; then it flows at the caller's pace.
    pub async fn download(
        &self,
        request: pb::DownloadRequest,
    ) -> Result<AgentStream<pb::DownloadResponse>> {
        Ok(relayed(
            bounded(self.files.clone().download(request)).await?,
        ))
    }

    /// A tree as archive chunks, opened as [`AgentClient::download`] is.
    pub async fn download_archive(
        &self,
        request: pb::DownloadArchiveRequest,
    ) -> Result<AgentStream<pb::DownloadArchiveResponse>> {
        Ok(relayed(
            bounded(self.files.clone().download_archive(request)).await?,
        ))
    }
}

/// An agent's answer stream with its errors as domain errors.
fn relayed<T: Send + 'static>(answers: tonic::Streaming<T>) -> AgentStream<T> {
    Box::pin(answers.map(|answer| answer.map_err(errors::from_agent)))
}

/// Runs an agent call under [`CALL_DEADLINE`].
async fn bounded<T>(call: impl Future<Output = Result<Response<T>, Status>>) -> Result<T> {
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Ok(answer) => answer.map(Response::into_inner).map_err(errors::from_agent),
        Err(_) => Err(Error::new(
            ErrorKind::DeadlineExceeded,
            format!(
                "the sandbox's agent did not answer within {}s",
                CALL_DEADLINE.as_secs()
            ),
        )),
    }
}

/// Blanks the values of a command's environment: they often hold secrets,
/// and whoever reads commands later need not see them (the keys stay).
fn hide_env_values(command: &mut pb::Command) {
    if let Some(spec) = &mut command.spec {
        spec.env.values_mut().for_each(String::clear);
    }
}
