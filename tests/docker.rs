//! The docker provider against the real engine: containers with Paddock's
//! labels and limits, read-only roots and named volumes, pulls from a
//! registry, engine events, a remote engine over mutual TLS, refused
//! requests, and crashes mid-create. The exec suite runs on Docker in
//! tests/exec.rs (images with and without a shell).

mod common;

use std::time::Duration;

use common::docker::{self, BUSYBOX, containers_of, docker_output};
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
            resource_limits: true,
            images: true,
            exec: true,
            files: true,
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
async fn engine_events_keep_records_true() {
    let Some(server) = docker_server().await else {
        return;
    };
    let mut sandboxes = server.sandboxes().await;
    let killed = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await;
    let removed = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await;

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
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest {
            image: pulled.clone(),
            ..Default::default()
        })
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

    let all = common::every_sandbox(&mut sandboxes).await;
    assert_eq!(all.len(), 1, "failed creates leave no record");

    sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id,
        })
        .await
        .unwrap();
    assert!(
        docker::docker(&["rmi", &pulled]),
        "the pulled image is there"
    );
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
    // Each create is held at the gate after making its container, so the
    // server dies with containers made and records not yet RUNNING.
    let gate = common::spawned::Gate::new();
    let mut server = ServerProcess::spawn_with(temp.path(), &[&env[..], &[gate.env()]].concat());
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
        "every container to be made and its create held at the gate",
        || async {
            if gate.arrivals() < CREATES {
                return None;
            }
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
    // And an orphan: a container of this store that no record owns.
    let orphan = paddock::ids::new_sandbox_id();
    docker_output(&[
        "create",
        "--name",
        &format!("paddock-{orphan}"),
        "--label",
        &format!("io.paddock.scope={scope}"),
        "--label",
        "io.paddock.role=sandbox",
        "--label",
        &format!("io.paddock.sandbox-id={orphan}"),
        "--label",
        "io.paddock.tenant=default",
        BUSYBOX,
        "sleep",
        "600",
    ]);

    let server = ServerProcess::spawn_with(temp.path(), &env);
    let mut client = server.client().await;
    let all = common::every_sandbox(&mut client).await;
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
    assert!(containers_of(&orphan).is_empty(), "the orphan is removed");
}

/// A stand-in for a remote engine that demands mutual TLS: a TLS listener on
/// loopback that accepts only clients with a certificate from its own CA and
/// forwards each connection to the local engine's socket.
struct TlsEngineProxy {
    address: std::net::SocketAddr,
    /// ca.pem, cert.pem and key.pem for a client.
    client_files: tempfile::TempDir,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsEngineProxy {
    async fn start() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
        };
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use std::sync::Arc;

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let mut server_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        server_params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client_cert = CertificateParams::new(vec!["paddock-test-client".to_owned()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .unwrap();

        let client_files = tempfile::tempdir().unwrap();
        std::fs::write(client_files.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(client_files.path().join("cert.pem"), client_cert.pem()).unwrap();
        std::fs::write(
            client_files.path().join("key.pem"),
            client_key.serialize_pem(),
        )
        .unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepting = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                });
            }
        });
        Self {
            address,
            client_files,
            accepting,
        }
    }
}

impl Drop for TlsEngineProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

#[tokio::test]
async fn a_remote_engine_over_mutual_tls_serves_sandboxes_through_the_bridge() {
    if !docker::available() {
        return;
    }
    let proxy = TlsEngineProxy::start().await;
    let host = format!("tcp://{}", proxy.address);
    let server = TestServer::start_with(|args| {
        args.provider = Some("docker".into());
        args.docker_host = Some(host.clone());
        args.docker_tls_dir = Some(proxy.client_files.path().to_path_buf());
    })
    .await;
    let mut sandboxes = server.sandboxes().await;
    let docker_info = server.provider("docker").await;
    assert!(docker_info.available, "{}", docker_info.detail);
    assert!(docker_info.detail.contains(&host), "{}", docker_info.detail);
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await;
    let mut exec = ExecServiceClient::new(server.channel().await);
    let out = run(&mut exec, &sandbox.id, &["echo", "over tls"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over tls\n");
    sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();
    assert!(containers_of(&sandbox.id).is_empty());

    // Without the client certificate the engine is unreachable, and the
    // provider says so instead of failing the server.
    let plain = TestServer::start_with(|args| {
        args.provider = Some("docker".into());
        args.docker_host = Some(host.clone());
    })
    .await;
    let docker_info = plain.provider("docker").await;
    assert!(!docker_info.available);
    assert!(
        docker_info.detail.contains("does not answer"),
        "{}",
        docker_info.detail
    );
    let refused = plain
        .sandboxes()
        .await
        .create_sandbox(pb::CreateSandboxRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{}", refused.message());
}

#[tokio::test]
async fn named_volumes_outlive_their_sandboxes_and_can_be_read_only() {
    let Some(server) = docker_server().await else {
        return;
    };
    let volume = format!("paddock-test-{}", uuid::Uuid::now_v7().simple());
    let mut sandboxes = server.sandboxes().await;
    let mut exec = ExecServiceClient::new(server.channel().await);
    let mounting = |read_only| pb::CreateSandboxRequest {
        volumes: vec![pb::Volume {
            name: volume.clone(),
            mount_path: "/data".into(),
            read_only,
        }],
        ..Default::default()
    };
    let writer = server.running_sandbox(mounting(false)).await;
    let out = run(
        &mut exec,
        &writer.id,
        &["sh", "-c", "echo persisted > /data/note"],
    )
    .await;
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: writer.id.clone(),
        })
        .await
        .unwrap();

    let reader = server.running_sandbox(mounting(true)).await;
    let out = run(&mut exec, &reader.id, &["cat", "/data/note"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "persisted\n");
    let out = run(&mut exec, &reader.id, &["touch", "/data/other"]).await;
    assert_ne!(out.exit_code, Some(0));
    sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: reader.id.clone(),
        })
        .await
        .unwrap();
    assert!(docker::docker(&["volume", "rm", &volume]));
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
