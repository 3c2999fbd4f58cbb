//! The escape suite: from inside a sandbox, try what untrusted code would
//! try — reach other sandboxes (the same tenant's and another's), the
//! server, the host's services, link-local and private addresses; mount,
//! make devices, open raw sockets, gain privileges through a setuid binary,
//! exhaust processes and memory — and require every attempt to fail while
//! the sandbox and the server stay healthy. Each attempt has a positive
//! control (the same attempt where it must succeed), so that a broken probe
//! cannot pass for a closed hole.
//!
//! It changes the host: a network namespace standing for "the internet" and
//! a private network (outside.rs), a stub DNS server standing for the
//! internet's (dns.rs), and a listener on every host address. It
//! needs root, `ip` and a C compiler; under CI=true their absence fails it.

#[path = "../common/mod.rs"]
mod common;

mod builds;
mod dns;
mod host;
mod network;
mod outside;
mod ports;
mod volumes;

use common::api_keys::{Authed, make_key, with_header};
use common::{Provider, TestServer};
use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use paddock::pb::file_service_client::FileServiceClient;
use paddock::pb::sandbox_service_client::SandboxServiceClient;

/// Whether the suite can change the host here. Panics under CI when not.
fn privileged() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "cc"].iter().all(|tool| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if root && tools {
        return true;
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !in_ci,
        "the escape suite needs root, ip and cc (root: {root}); CI=true forbids skipping it"
    );
    eprintln!("SKIPPED: the escape suite needs root, ip and a C compiler");
    false
}

/// One tenant's clients, with its API key.
struct Tenant {
    sandboxes: SandboxServiceClient<Authed>,
    exec: ExecServiceClient<Authed>,
    files: FileServiceClient<Authed>,
}

/// What a command printed and how it ended.
#[derive(Debug)]
struct Ran {
    stdout: String,
    /// Shown with the rest when an assertion fails.
    #[allow(dead_code)]
    stderr: String,
    /// `None` when a signal ended it.
    exit_code: Option<i32>,
}

impl Tenant {
    /// A new key of `tenant` on `server` (which needs keys).
    async fn of(server: &TestServer, tenant: &str) -> Self {
        let key = make_key(server, tenant);
        let channel = server.channel().await;
        let header = Some(format!("Bearer {key}"));
        Self {
            sandboxes: SandboxServiceClient::new(with_header(channel.clone(), header.clone())),
            exec: ExecServiceClient::new(with_header(channel.clone(), header.clone())),
            files: FileServiceClient::new(with_header(channel, header)),
        }
    }

    /// A new RUNNING sandbox made from `request`; its id.
    async fn sandbox(&mut self, request: pb::CreateSandboxRequest) -> String {
        let sandbox = self
            .sandboxes
            .create_sandbox(request)
            .await
            .expect("create succeeds")
            .into_inner()
            .sandbox
            .unwrap();
        require_running(&sandbox);
        sandbox.id
    }

    /// Runs `line` with the sandbox's shell as `user` (empty: its default).
    async fn run_as(&mut self, sandbox_id: &str, user: &str, line: &str) -> Ran {
        // RunCommand has no user: a started command is waited for instead.
        if !user.is_empty() {
            let started = self
                .exec
                .start_command(pb::StartCommandRequest {
                    sandbox_id: sandbox_id.into(),
                    spec: Some(pb::CommandSpec {
                        shell: format!("({line}) >/tmp/.escape-out 2>/tmp/.escape-err"),
                        user: user.into(),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap()
                .into_inner()
                .command
                .unwrap();
            let ended = common::eventually(
                std::time::Duration::from_secs(60),
                "the command to end",
                || {
                    let mut exec = self.exec.clone();
                    let request = pb::GetCommandRequest {
                        sandbox_id: sandbox_id.into(),
                        command_id: started.id.clone(),
                    };
                    async move {
                        let command = exec.get_command(request).await.ok()?.into_inner().command?;
                        (command.state != pb::CommandState::Running as i32).then_some(command)
                    }
                },
            )
            .await;
            let collected = self
                .run(sandbox_id, "cat /tmp/.escape-out; cat /tmp/.escape-err >&2")
                .await;
            return Ran {
                exit_code: ended.exit_code,
                ..collected
            };
        }
        self.run(sandbox_id, line).await
    }

    /// Runs `line` with the sandbox's shell as its default user.
    async fn run(&mut self, sandbox_id: &str, line: &str) -> Ran {
        let ran = self
            .exec
            .run_command(pb::RunCommandRequest {
                sandbox_id: sandbox_id.into(),
                spec: Some(pb::CommandSpec {
                    shell: line.into(),
                    timeout: common::calls::seconds(120.0),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{line}: {e:?}"))
            .into_inner();
        Ran {
            stdout: String::from_utf8_lossy(&ran.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&ran.stderr).into_owned(),
            exit_code: ran.exit_code,
        }
    }

    /// Starts `line` in the background; it runs until the sandbox ends.
    async fn start(&mut self, sandbox_id: &str, line: &str) {
        self.exec
            .start_command(pb::StartCommandRequest {
                sandbox_id: sandbox_id.into(),
                spec: Some(pb::CommandSpec {
                    shell: line.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }

    /// Requires the sandbox RUNNING and answering a command.
    async fn still_healthy(&mut self, sandbox_id: &str) {
        let sandbox = self
            .sandboxes
            .get_sandbox(pb::GetSandboxRequest {
                sandbox_id: sandbox_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .sandbox
            .unwrap();
        require_running(&sandbox);
        let ran = self.run(sandbox_id, "echo still here").await;
        assert_eq!(ran.stdout, "still here\n", "{ran:?}");
    }
}

/// A keyed server whose default provider is `provider`, on every address
/// (so that a sandbox could try its port through a gateway), with settings
/// changed by `configure`.
async fn exposed_server(
    provider: Provider,
    configure: impl FnOnce(&mut paddock::config::ServeArgs),
) -> TestServer {
    TestServer::for_provider_with(provider, |args| {
        args.auth = Some("keys".into());
        args.listen = Some("0.0.0.0:0".into());
        configure(args);
    })
    .await
}

/// Requires `sandbox` RUNNING, saying why when it is not.
fn require_running(sandbox: &pb::Sandbox) {
    assert_eq!(
        sandbox.state,
        pb::SandboxState::Running as i32,
        "{}",
        sandbox.state_reason
    );
}
