//! The reaper deletes expired sandboxes and stops idle ones.

use super::*;

#[tokio::test]
async fn expired_sandboxes_are_deleted_and_idle_ones_stopped() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let short_lived = create(
        &mut client,
        pb::CreateSandboxRequest {
            timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await;
    let idle = create(
        &mut client,
        pb::CreateSandboxRequest {
            idle_timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await;

    let expired = wait_for_state(&client, &short_lived.id, pb::SandboxState::Deleted).await;
    assert!(
        expired.state_reason.contains("lifetime"),
        "{}",
        expired.state_reason
    );
    assert!(!server.sandbox_dir(&short_lived.id).exists());

    let stopped = wait_for_state(&client, &idle.id, pb::SandboxState::Stopped).await;
    assert!(
        stopped.state_reason.contains("idle"),
        "{}",
        stopped.state_reason
    );
}
