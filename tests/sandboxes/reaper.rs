//! The reaper deletes expired sandboxes and stops idle ones.

use super::*;

async fn expired_sandboxes_are_deleted_and_idle_ones_stopped(store: Store) {
    let Some(server) = TestServer::on(store, |_| {}).await else {
        return;
    };
    let short_lived = server
        .create(pb::CreateSandboxRequest {
            timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await;
    let idle = server
        .create(pb::CreateSandboxRequest {
            idle_timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await;

    let expired = server
        .wait_for_state(&short_lived.id, pb::SandboxState::Deleted)
        .await;
    assert!(
        expired.state_reason.contains("lifetime"),
        "{}",
        expired.state_reason
    );
    assert!(!server.sandbox_dir(&short_lived.id).exists());

    let stopped = server
        .wait_for_state(&idle.id, pb::SandboxState::Stopped)
        .await;
    assert!(
        stopped.state_reason.contains("idle"),
        "{}",
        stopped.state_reason
    );
}

on_every_store!(expired_sandboxes_are_deleted_and_idle_ones_stopped,);
