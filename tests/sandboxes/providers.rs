//! The sandbox lifecycle, the same on every provider: what a sandbox is
//! made of, stop and start keeping its files, lifetimes and idle stops, and
//! delete leaving nothing behind.

use crate::common;
use crate::common::calls::seconds;
use crate::on_every_provider;

use crate::common::{Provider, TestServer};
use paddock::pb;

/// Whether the provider's object of the sandbox still exists.
fn object_exists(server: &TestServer, provider: Provider, id: &str) -> bool {
    match provider {
        Provider::Docker | Provider::DockerBridge => !common::docker::containers_of(id).is_empty(),
        Provider::Kubernetes => server.pod_objects_exist(id),
        Provider::Process => server.sandbox_dir(id).exists(),
    }
}

async fn env_workdir_stop_start_and_delete(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let mut sandboxes = server.sandboxes().await;
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest {
            env: [("GREETING".to_owned(), "hello".to_owned())].into(),
            workdir: "/work/space".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(sandbox.provider, provider.name());
    assert!(!sandbox.provider_ref.is_empty());
    assert_eq!(
        server.shell(&sandbox.id, "echo $GREETING; pwd").await,
        "hello\n/work/space\n"
    );
    server.shell(&sandbox.id, "echo kept > note").await;

    let stopped = sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(stopped.state, pb::SandboxState::Stopped as i32);
    assert!(object_exists(&server, provider, &sandbox.id));
    let started = sandboxes
        .start_sandbox(pb::StartSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(started.state, pb::SandboxState::Running as i32);
    assert_eq!(server.shell(&sandbox.id, "cat note").await, "kept\n");

    let deleted = sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(deleted.state, pb::SandboxState::Deleted as i32);
    assert!(!object_exists(&server, provider, &sandbox.id));
}

async fn idle_sandboxes_stop_and_expired_ones_go(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let idle = server
        .running_sandbox(pb::CreateSandboxRequest {
            idle_timeout: seconds(1.0),
            ..Default::default()
        })
        .await;
    // The short lifetime is given once the sandbox runs, so that a slow
    // create cannot use it up before the sandbox is RUNNING.
    let expiring = server.running_sandbox(Default::default()).await;
    server
        .sandboxes()
        .await
        .update_sandbox(pb::UpdateSandboxRequest {
            sandbox_id: expiring.id.clone(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["timeout".into()],
            }),
            timeout: seconds(1.5),
            ..Default::default()
        })
        .await
        .unwrap();
    let stopped = server
        .wait_for_state(&idle.id, pb::SandboxState::Stopped)
        .await;
    assert!(
        stopped.state_reason.contains("idle"),
        "{}",
        stopped.state_reason
    );
    assert!(object_exists(&server, provider, &idle.id));
    server
        .wait_for_state(&expiring.id, pb::SandboxState::Deleted)
        .await;
    assert!(!object_exists(&server, provider, &expiring.id));
    let still = server.get(&idle.id).await;
    assert_eq!(still.state, pb::SandboxState::Stopped as i32);
}

async fn no_network_means_loopback_only(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let network_none = server
        .provider(provider.name())
        .await
        .capabilities
        .unwrap()
        .network_none;
    if !network_none {
        // The process provider cuts the network only inside bubblewrap.
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !in_ci,
            "{} cannot cut the network here (is bubblewrap missing?), and CI=true forbids skipping",
            provider.name()
        );
        eprintln!("SKIPPED: {} cannot cut the network here", provider.name());
        return;
    }
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest {
            network: pb::NetworkMode::None as i32,
            ..Default::default()
        })
        .await;
    // /proc/net/dev lists the interfaces of the caller's network namespace
    // (/sys/class/net may show the host's on the process provider).
    assert_eq!(
        server
            .shell(
                &sandbox.id,
                "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"
            )
            .await,
        "lo\n"
    );
}

on_every_provider!(
    env_workdir_stop_start_and_delete,
    idle_sandboxes_stop_and_expired_ones_go,
    no_network_means_loopback_only,
);
