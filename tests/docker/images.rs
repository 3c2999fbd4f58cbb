//! Images are pulled when missing; a bad one leaves nothing behind.

use super::*;

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
