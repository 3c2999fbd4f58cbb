//! The docker provider against the real engine: containers with Paddock's
//! labels and limits, images with no shell, pulls from a registry, engine
//! events, and crashes mid-create.

mod common;

use std::time::Duration;

use common::docker::{self, BUSYBOX, NO_SHELL, containers_of, docker_output};
use common::spawned::ServerProcess;
use common::{TestServer, eventually};
use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use paddock::store::Store;
use tonic::Code;
use tonic::transport::Channel;

async fn docker_server() -> Option<TestServer> {
    if !docker::available() {
        return None;
    }
    Some(TestServer::for_provider(common::Provider::Docker).await)
}

async fn create(
    sandboxes: &mut SandboxServiceClient<Channel>,
    request: pb::CreateSandboxRequest,
) -> pb::Sandbox {
    let sandbox = sandboxes
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

async fn run(
    exec: &mut ExecServiceClient<Channel>,
    sandbox_id: &str,
    command: &[&str],
) -> pb::RunCommandResponse {
    exec.run_command(pb::RunCommandRequest {
        sandbox_id: sandbox_id.to_owned(),
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}

fn inspect(container: &str, format: &str) -> String {
    docker_output(&["inspect", "--format", format, container])
}

#[tokio::test]
async fn auto_picks_docker_when_the_engine_answers_and_lists_it_honestly() {
    if !docker::available() {
        return;
    }
    let server = TestServer::start_with(|args| args.provider = Some("auto".into())).await;
    let providers = server
        .sandboxes()
        .await
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    let docker = providers.iter().find(|p| p.name == "docker").unwrap();
    assert!(docker.available && docker.is_default, "{docker:?}");
    assert!(docker.detail.contains("API 1."), "{}", docker.detail);
    assert_eq!(
        docker.capabilities,
        Some(pb::ProviderCapabilities {
            tty: true,
            signals: true,
            stop_start: true,
            volumes: true,
            network_none: true,
            resource_limits: true,
            images: true,
            exec: true,
            files: false,
            read_only_root: true,
        })
    );

    // A dynamically linked agent cannot run in images: docker says so and
    // auto falls back to process.
    let server = TestServer::start_with(|args| {
        args.provider = Some("auto".into());
        args.docker_agent_binary = Some(env!("CARGO_BIN_EXE_paddock").into());
    })
    .await;
    let providers = server
        .sandboxes()
        .await
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    let docker = providers.iter().find(|p| p.name == "docker").unwrap();
    assert!(!docker.available && !docker.is_default);
    assert!(
        docker.detail.contains("dynamically linked"),
        "{}",
        docker.detail
    );
    assert!(
        providers
            .iter()
            .any(|p| p.name == "process" && p.is_default)
    );
}

#[tokio::test]
async fn a_sandbox_is_a_labelled_limited_container_for_its_whole_life() {
    let Some(server) = docker_server().await else {
        return;
    };
    let mut sandboxes = server.sandboxes().await;
    let mut exec = ExecServiceClient::new(server.channel().await);
    let sandbox = create(
        &mut sandboxes,
        pb::CreateSandboxRequest {
            image: BUSYBOX.into(),
            env: [("GREETING".to_owned(), "hello".to_owned())].into(),
            resources: Some(pb::Resources {
                cpu_millis: 500,
                memory_bytes: 64 << 20,
                pids: 100,
            }),
            network: pb::NetworkMode::None as i32,
            workdir: "/work".into(),
            ..Default::default()
        },
    )
    .await;
    let containers = containers_of(&sandbox.id);
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert!(sandbox.provider_ref.starts_with(container.as_str()));
    assert_eq!(sandbox.image, BUSYBOX);
    assert_eq!(
        inspect(container, "{{index .Config.Labels \"io.paddock.tenant\"}}"),
        "default"
    );
    assert_eq!(inspect(container, "{{.HostConfig.NanoCpus}}"), "500000000");
    assert_eq!(inspect(container, "{{.HostConfig.Memory}}"), "67108864");
    assert_eq!(inspect(container, "{{.HostConfig.PidsLimit}}"), "100");
    assert_eq!(inspect(container, "{{.HostConfig.NetworkMode}}"), "none");

    // The image's environment, the sandbox's, the workdir, no network.
    let out = run(
        &mut exec,
        &sandbox.id,
        &["sh", "-c", "echo $GREETING $PWD; ls /sys/class/net"],
    )
    .await;
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello /work\nlo\n");

    // Stop keeps the filesystem; start brings the agent back.
    let out = run(
        &mut exec,
        &sandbox.id,
        &["sh", "-c", "echo kept > /work/note"],
    )
    .await;
    assert_eq!(out.exit_code, Some(0));
    sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(inspect(container, "{{.State.Running}}"), "false");
    let refused = exec
        .run_command(pb::RunCommandRequest {
            sandbox_id: sandbox.id.clone(),
            command: vec!["true".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    sandboxes
        .start_sandbox(pb::StartSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(inspect(container, "{{.State.Running}}"), "true");
    let out = run(&mut exec, &sandbox.id, &["cat", "/work/note"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\n");

    // Delete removes the container and its anonymous volumes.
    let volumes = inspect(
        container,
        "{{range .Mounts}}{{if eq .Destination \"/.paddock/state\"}}{{.Name}}{{end}}{{end}}",
    );
    assert!(!volumes.is_empty());
    sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();
    assert!(containers_of(&sandbox.id).is_empty());
    assert!(!docker::docker(&["volume", "inspect", &volumes]));
}

#[tokio::test]
async fn an_image_with_no_shell_runs_commands_and_refuses_shell_lines() {
    let Some(server) = docker_server().await else {
        return;
    };
    let mut sandboxes = server.sandboxes().await;
    let mut exec = ExecServiceClient::new(server.channel().await);
    let sandbox = create(
        &mut sandboxes,
        pb::CreateSandboxRequest {
            image: NO_SHELL.into(),
            ..Default::default()
        },
    )
    .await;
    let out = run(&mut exec, &sandbox.id, &["echo", "no", "shell"]).await;
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no shell\n");

    let refused = exec
        .run_command(pb::RunCommandRequest {
            sandbox_id: sandbox.id.clone(),
            shell: "echo hi".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("/bin/sh"),
        "{}",
        refused.message()
    );

    // A signal, with no shell anywhere (terminals on this image are part
    // of the shared suite in tests/exec.rs).
    let out = run(&mut exec, &sandbox.id, &["ls", "/bin"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("sleep"));
    let started = exec
        .start_command(pb::StartCommandRequest {
            sandbox_id: sandbox.id.clone(),
            spec: Some(pb::CommandSpec {
                command: vec!["sleep".into(), "600".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    exec.signal_command(pb::SignalCommandRequest {
        sandbox_id: sandbox.id.clone(),
        command_id: started.id.clone(),
        signal: "SIGTERM".into(),
    })
    .await
    .unwrap();
    let ended = eventually(Duration::from_secs(10), "sleep to end", || {
        let mut exec = exec.clone();
        let sandbox_id = sandbox.id.clone();
        let command_id = started.id.clone();
        async move {
            let command = exec
                .get_command(pb::GetCommandRequest {
                    sandbox_id,
                    command_id,
                })
                .await
                .ok()?
                .into_inner()
                .command?;
            (command.state == pb::CommandState::Exited as i32).then_some(command)
        }
    })
    .await;
    assert_eq!(ended.signal, "SIGTERM");
}

#[tokio::test]
async fn read_only_root_leaves_the_workdir_and_tmp_writable() {
    let Some(server) = docker_server().await else {
        return;
    };
    let mut sandboxes = server.sandboxes().await;
    let mut exec = ExecServiceClient::new(server.channel().await);
    let sandbox = create(
        &mut sandboxes,
        pb::CreateSandboxRequest {
            image: BUSYBOX.into(),
            read_only_root: true,
            ..Default::default()
        },
    )
    .await;
    assert!(sandbox.read_only_root);
    let out = run(&mut exec, &sandbox.id, &["touch", "/etc/forbidden"]).await;
    assert_ne!(out.exit_code, Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only"));
    let out = run(
        &mut exec,
        &sandbox.id,
        &["sh", "-c", "touch /workspace/ok /tmp/ok && echo fine"],
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fine\n", "{out:?}");
}

#[tokio::test]
async fn engine_events_keep_records_true() {
    let Some(server) = docker_server().await else {
        return;
    };
    let mut sandboxes = server.sandboxes().await;
    let killed = create(&mut sandboxes, pb::CreateSandboxRequest::default()).await;
    let removed = create(&mut sandboxes, pb::CreateSandboxRequest::default()).await;

    // Killed outside Paddock: STOPPED, with the reason; it can start again.
    assert!(docker::docker(&["kill", &killed.provider_ref]));
    let stopped = wait_for_state(&mut sandboxes, &killed.id, pb::SandboxState::Stopped).await;
    assert!(
        stopped.state_reason.contains("exited with code 137"),
        "{}",
        stopped.state_reason
    );
    sandboxes
        .start_sandbox(pb::StartSandboxRequest {
            sandbox_id: killed.id.clone(),
        })
        .await
        .unwrap();

    // Removed outside Paddock: FAILED, with the reason.
    assert!(docker::docker(&["rm", "-f", "-v", &removed.provider_ref]));
    let failed = wait_for_state(&mut sandboxes, &removed.id, pb::SandboxState::Failed).await;
    assert!(
        failed.state_reason.contains("removed outside Paddock"),
        "{}",
        failed.state_reason
    );
}

async fn wait_for_state(
    sandboxes: &mut SandboxServiceClient<Channel>,
    id: &str,
    state: pb::SandboxState,
) -> pb::Sandbox {
    eventually(
        Duration::from_secs(15),
        "the record to follow the engine",
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
                (sandbox.state == state as i32).then_some(sandbox)
            }
        },
    )
    .await
}

#[tokio::test]
async fn images_are_pulled_when_missing_and_bad_ones_leave_nothing() {
    let Some(server) = docker_server().await else {
        return;
    };
    let registry = common::docker::LoopbackRegistry::start();
    let pulled = registry.push(BUSYBOX, "paddock-test/pulled:v1");
    let mut sandboxes = server.sandboxes().await;
    let sandbox = create(
        &mut sandboxes,
        pb::CreateSandboxRequest {
            image: pulled.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(sandbox.image, pulled);

    let missing = sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            image: format!("{}/paddock-test/absent:v1", registry.address),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{}", missing.message());
    assert!(missing.message().contains("paddock-test/absent:v1"));

    let unreachable = sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            image: "127.0.0.1:9/paddock-test/nowhere:v1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        unreachable.code(),
        Code::Unavailable,
        "{}",
        unreachable.message()
    );
    assert!(
        unreachable
            .message()
            .contains("127.0.0.1:9/paddock-test/nowhere:v1")
    );

    let all = sandboxes
        .list_sandboxes(pb::ListSandboxesRequest {
            states: (1..=8).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert_eq!(all.len(), 1, "failed creates leave no record");
}

#[tokio::test]
async fn sigkill_during_docker_creates_leaves_no_orphan_and_nothing_stuck() {
    if !docker::available() {
        return;
    }
    const CREATES: usize = 20;
    let temp = tempfile::tempdir().unwrap();
    let agent = docker::agent_binary();
    let env = [
        ("PADDOCK_PROVIDER", "docker"),
        ("PADDOCK_DOCKER_DEFAULT_IMAGE", BUSYBOX),
        ("PADDOCK_DOCKER_AGENT_BINARY", agent.to_str().unwrap()),
    ];
    // Each create waits 3 s after making its container, so the server dies
    // with containers made and records not yet RUNNING.
    let mut server = ServerProcess::spawn_with(temp.path(), "3s", &env);
    let client = server.client().await;
    let mut creates = Vec::new();
    for _ in 0..CREATES {
        let mut client = client.clone();
        creates.push(tokio::spawn(async move {
            client
                .create_sandbox(pb::CreateSandboxRequest::default())
                .await
        }));
    }
    let scope = paddock::store::SqlStore::connect(&paddock::store::SqlStore::sqlite_url(
        &temp.path().join("paddock.db"),
    ))
    .await
    .unwrap()
    .store_id()
    .await
    .unwrap();
    eventually(
        Duration::from_secs(60),
        "every container to be made",
        || async {
            let made = docker_output(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=io.paddock.scope={scope}"),
            ])
            .lines()
            .count();
            (made == CREATES).then_some(())
        },
    )
    .await;
    let _cleanup = docker::RemoveContainers(scope.clone());
    server.kill();
    for create in creates {
        assert!(
            create.await.unwrap().is_err(),
            "no create can have finished"
        );
    }

    let server = ServerProcess::spawn_with(temp.path(), "0s", &env);
    let mut client = server.client().await;
    let all = client
        .list_sandboxes(pb::ListSandboxesRequest {
            states: (1..=8).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert_eq!(all.len(), CREATES);
    for sandbox in &all {
        // Every create was cut short after making its container: the
        // restart finishes each one.
        assert_eq!(
            sandbox.state,
            pb::SandboxState::Running as i32,
            "{} is {:?}: {}",
            sandbox.id,
            sandbox.state,
            sandbox.state_reason
        );
    }
    let mut live: Vec<String> = all.iter().map(|s| format!("paddock-{}", s.id)).collect();
    live.sort();
    let mut containers: Vec<String> = docker_output(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.paddock.scope={scope}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(str::to_owned)
    .collect();
    containers.sort();
    assert_eq!(containers, live, "one container per live record, no orphan");
}
