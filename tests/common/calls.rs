//! Typed calls on a test server that return plain values and fail the test
//! on an error, for tests whose subject is elsewhere.

use std::time::Duration;

use paddock::pb;
use pb::exec_service_client::ExecServiceClient;
use pb::file_service_client::FileServiceClient;
use tonic::transport::Channel;

use super::{TestServer, eventually};

/// A sandbox's state.
pub fn state(sandbox: &pb::Sandbox) -> pb::SandboxState {
    pb::SandboxState::try_from(sandbox.state).expect("a known state")
}

/// A duration of `value` seconds, as a request field.
pub fn seconds(value: f64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: value.trunc() as i64,
        nanos: (value.fract() * 1e9) as i32,
    })
}

impl TestServer {
    /// Creates a sandbox from `request`; whatever state it ends in.
    pub async fn create(&self, request: pb::CreateSandboxRequest) -> pb::Sandbox {
        self.sandboxes()
            .await
            .create_sandbox(request)
            .await
            .expect("create succeeds")
            .into_inner()
            .sandbox
            .expect("a sandbox")
    }

    /// Creates a sandbox from `request` and requires it RUNNING.
    pub async fn running_sandbox(&self, request: pb::CreateSandboxRequest) -> pb::Sandbox {
        let sandbox = self
            .sandboxes()
            .await
            .create_sandbox(request)
            .await
            .unwrap()
            .into_inner()
            .sandbox
            .unwrap();
        assert_eq!(
            sandbox.state,
            pb::SandboxState::Running as i32,
            "{}",
            sandbox.state_reason
        );
        sandbox
    }

    /// Runs `line` with the sandbox's shell, requires exit code 0, and
    /// returns its standard output.
    pub async fn shell(&self, sandbox_id: &str, line: &str) -> String {
        let ran = pb::exec_service_client::ExecServiceClient::new(self.channel().await)
            .run_command(pb::RunCommandRequest {
                sandbox_id: sandbox_id.into(),
                spec: Some(pb::CommandSpec {
                    shell: line.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            ran.exit_code,
            Some(0),
            "{line}: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
        String::from_utf8(ran.stdout).unwrap()
    }

    /// The provider called `name`, as ListProviders describes it.
    pub async fn provider(&self, name: &str) -> pb::Provider {
        self.sandboxes()
            .await
            .list_providers(pb::ListProvidersRequest {})
            .await
            .unwrap()
            .into_inner()
            .providers
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("ListProviders lists {name}"))
    }

    /// The sandbox `id`.
    pub async fn get(&self, id: &str) -> pb::Sandbox {
        self.sandboxes()
            .await
            .get_sandbox(pb::GetSandboxRequest {
                sandbox_id: id.to_owned(),
            })
            .await
            .expect("get succeeds")
            .into_inner()
            .sandbox
            .expect("a sandbox")
    }

    /// Polls the sandbox `id` until it is in `wanted`, for up to 15 s.
    pub async fn wait_for_state(&self, id: &str, wanted: pb::SandboxState) -> pb::Sandbox {
        let sandboxes = self.sandboxes().await;
        eventually(
            Duration::from_secs(15),
            &format!("{id} to become {wanted:?}"),
            || {
                let mut sandboxes = sandboxes.clone();
                let id = id.to_owned();
                async move {
                    let sandbox = sandboxes
                        .get_sandbox(pb::GetSandboxRequest { sandbox_id: id })
                        .await
                        .ok()?
                        .into_inner()
                        .sandbox?;
                    (state(&sandbox) == wanted).then_some(sandbox)
                }
            },
        )
        .await
    }

    /// Runs `command` (a program and its arguments) in the sandbox to its
    /// end; how it ended is the caller's to check.
    pub async fn run(&self, sandbox_id: &str, command: &[&str]) -> pb::RunCommandResponse {
        self.exec()
            .await
            .run_command(pb::RunCommandRequest {
                sandbox_id: sandbox_id.to_owned(),
                spec: Some(pb::CommandSpec {
                    command: command.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("RunCommand succeeds")
            .into_inner()
    }

    /// Writes `content` to `path` in the sandbox through the file service
    /// (no command runs, so none is listed).
    pub async fn write(&self, sandbox_id: &str, path: &str, content: &[u8]) {
        self.files()
            .await
            .write_file(pb::WriteFileRequest {
                sandbox_id: sandbox_id.to_owned(),
                path: path.to_owned(),
                content: content.to_vec(),
                ..Default::default()
            })
            .await
            .expect("WriteFile succeeds");
    }

    /// An ExecService client taking answers up to 16 MiB.
    pub async fn exec(&self) -> ExecServiceClient<Channel> {
        ExecServiceClient::new(self.channel().await).max_decoding_message_size(16 << 20)
    }

    /// A FileService client taking answers up to 16 MiB.
    pub async fn files(&self) -> FileServiceClient<Channel> {
        FileServiceClient::new(self.channel().await).max_decoding_message_size(16 << 20)
    }
}
