//! A sandbox is a labelled, limited container for its whole life.

use super::*;

#[tokio::test]
async fn auto_picks_docker_when_the_engine_answers_and_lists_it_honestly() {
    if !docker::available() {
        return;
    }
    let server = TestServer::start_with(|args| args.provider = Some("auto".into())).await;
    let docker = server.provider("docker").await;
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
            // This server runs as root beside the engine: it enforces EGRESS.
            network_egress: true,
            // Not allowed by this server's operator.
            network_bridge: false,
            // It answers ALLOW_LIST sandboxes' DNS on the engine's bridge.
            network_allow_list: true,
            resource_limits: true,
            images: true,
            exec: true,
            files: true,
            read_only_root: true,
            port_forward: true,
            template_builds: true,
            snapshots: true,
            warm_pools: true,
        })
    );

    // A dynamically linked agent cannot run in images: docker says so and
    // auto falls back to process.
    let server = TestServer::start_with(|args| {
        args.provider = Some("auto".into());
        args.docker_agent_binary = Some(env!("CARGO_BIN_EXE_paddock").into());
    })
    .await;
    let docker = server.provider("docker").await;
    assert!(!docker.available && !docker.is_default);
    assert!(
        docker.detail.contains("dynamically linked"),
        "{}",
        docker.detail
    );
    assert!(server.provider("process").await.is_default);
}

#[tokio::test]
async fn a_sandbox_is_a_labelled_limited_container_for_its_whole_life() {
    let Some(server) = docker_server().await else {
        return;
    };
    let mut sandboxes = server.sandboxes().await;
    let mut exec = ExecServiceClient::new(server.channel().await);
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest {
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
        })
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
            spec: Some(pb::CommandSpec {
                command: vec!["true".into()],
                ..Default::default()
            }),
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
async fn read_only_root_leaves_the_workdir_and_tmp_writable() {
    let Some(server) = docker_server().await else {
        return;
    };
    let mut exec = ExecServiceClient::new(server.channel().await);
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest {
            image: BUSYBOX.into(),
            read_only_root: true,
            ..Default::default()
        })
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
async fn engine_volumes_are_not_volumes_of_a_tenant() {
    // Before VolumeService a request's volume name went to the engine as it
    // was: any volume on it could be mounted, the agent's own included.
    // Now a name is looked up among the tenant's volumes (tests/sandboxes
    // /volumes.rs covers mounting them).
    let Some(server) = docker_server().await else {
        return;
    };
    let engine_volume = format!("paddock-test-{}", uuid::Uuid::now_v7().simple());
    assert!(docker::docker(&["volume", "create", &engine_volume]));
    let agent_volume = docker::docker_output(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        "label=io.paddock.agent-sha256",
    ]);
    let mut sandboxes = server.sandboxes().await;
    for name in [engine_volume.as_str(), agent_volume.lines().next().unwrap()] {
        let refused = sandboxes
            .create_sandbox(pb::CreateSandboxRequest {
                volumes: vec![pb::Volume {
                    name: name.into(),
                    mount_path: "/data".into(),
                    read_only: false,
                }],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::NotFound, "{name}: {refused:?}");
    }
    let listed = sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert!(listed.is_empty(), "nothing was made: {listed:?}");
    assert!(docker::docker(&["volume", "rm", &engine_volume]));
}

#[tokio::test]
async fn requests_the_engine_would_refuse_are_refused_before_anything_is_made() {
    let Some(server) = docker_server().await else {
        return;
    };
    let mut sandboxes = server.sandboxes().await;
    let cases = [
        (
            pb::CreateSandboxRequest {
                resources: Some(pb::Resources {
                    memory_bytes: 5 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::InvalidArgument,
            "resources.memory_bytes",
        ),
        (
            pb::CreateSandboxRequest {
                resources: Some(pb::Resources {
                    cpu_millis: 256_000,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::FailedPrecondition,
            "resources.cpu_millis",
        ),
        (
            pb::CreateSandboxRequest {
                resources: Some(pb::Resources {
                    pids: 2,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::InvalidArgument,
            "resources.pids",
        ),
        (
            pb::CreateSandboxRequest {
                image: "Paddock-Test/UPPER:case".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "not a valid image reference",
        ),
    ];
    for (request, code, says) in cases {
        let status = sandboxes.create_sandbox(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(says), "{}", status.message());
    }
    let all = common::every_sandbox(&mut sandboxes).await;
    assert!(all.is_empty(), "refused creates leave no record: {all:?}");
    assert!(
        docker_output(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.paddock.scope={}", server.scope)
        ])
        .is_empty()
    );
}
