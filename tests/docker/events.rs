//! Engine events keep records true.

use super::*;

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
