//! Warm pools on Docker: a claimed container is its tenant's for the
//! engine's events too, the env given at claim outlives a restart, and a
//! snapshot into a template with a pool refills the pool from it.

use super::*;
use common::warm::{wait_until_ready, warm_template};
use paddock::pb::template_service_client::TemplateServiceClient;

#[tokio::test]
async fn a_claimed_warm_container_follows_the_engine_and_keeps_its_env() {
    let Some(server) = docker_server().await else {
        return;
    };
    warm_template(&server, "warm-docker", 2).await;
    wait_until_ready(&server, "warm-docker", 2).await;
    let mut sandboxes = server.sandboxes().await;
    let claimed = server
        .running_sandbox(pb::CreateSandboxRequest {
            template: "warm-docker".into(),
            env: [("TOKEN".to_owned(), "s3cret".to_owned())].into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        server.shell(&claimed.id, "echo $STAGE $TOKEN").await,
        "template s3cret\n"
    );

    // Killed outside Paddock: STOPPED with the reason, though its container
    // was labelled for the pool.
    assert!(docker::docker(&["kill", &claimed.provider_ref]));
    let stopped = wait_for_state(&mut sandboxes, &claimed.id, pb::SandboxState::Stopped).await;
    assert!(
        stopped.state_reason.contains("exited with code 137"),
        "{}",
        stopped.state_reason
    );
    sandboxes
        .start_sandbox(pb::StartSandboxRequest {
            sandbox_id: claimed.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        server
            .shell(&claimed.id, "echo $STAGE $TOKEN; cat setup.log")
            .await,
        "template s3cret\nset-up\n"
    );
}

#[tokio::test]
async fn a_snapshot_into_a_warm_template_refills_its_pool_from_the_snapshot() {
    let Some(server) = docker_server().await else {
        return;
    };
    let mut sandboxes = server.sandboxes().await;
    let original = server.running_sandbox(Default::default()).await;
    let snapshot = |note: &'static str| {
        let mut sandboxes = sandboxes.clone();
        let server = &server;
        let id = original.id.clone();
        async move {
            server
                .shell(&id, &format!("echo {note} > /workspace/note.txt"))
                .await;
            sandboxes
                .snapshot_sandbox(pb::SnapshotSandboxRequest {
                    sandbox_id: id,
                    template: "warm-snap".into(),
                })
                .await
                .expect("the snapshot succeeds")
                .into_inner()
        }
    };
    snapshot("first").await;
    // Give the template a pool: a new version with the snapshot's spec.
    let mut templates = TemplateServiceClient::new(server.channel().await);
    let mut spec = templates
        .get_template(pb::GetTemplateRequest {
            name: "warm-snap".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap()
        .spec
        .unwrap();
    spec.warm_pool_size = 2;
    templates
        .update_template(pb::UpdateTemplateRequest {
            name: "warm-snap".into(),
            spec: Some(spec),
        })
        .await
        .unwrap();
    // The next snapshot keeps the pool, which is made of it.
    assert_eq!(snapshot("second").await.version, 3);
    let pool = wait_until_ready(&server, "warm-snap", 2).await;
    assert_eq!(pool.hits, 0);
    let claimed = server
        .running_sandbox(pb::CreateSandboxRequest {
            template: "warm-snap".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(claimed.template, "warm-snap@3");
    assert_eq!(server.shell(&claimed.id, "cat note.txt").await, "second\n");
    assert_eq!(common::warm::pool_of(&server, "warm-snap").await.hits, 1);
    sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: claimed.id,
        })
        .await
        .unwrap();
    templates
        .delete_template(pb::DeleteTemplateRequest {
            name: "warm-snap".into(),
            force: true,
        })
        .await
        .unwrap();
}
