//! Warm pools on Docker: a claimed container is its tenant's for the
//! engine's events too, and the env given at claim outlives a restart.

use super::*;
use common::warm::{wait_until_ready, warm_template};

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
