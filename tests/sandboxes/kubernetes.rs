//! What only the kubernetes provider has, through the server and the test
//! API server (a test double backing pods with Docker containers): pods
//! ended behind Paddock's back, orphans removed at start-up by scope, and
//! the double's own schema check refusing a malformed pod.

use std::sync::Arc;

use crate::common::{self, Provider, TestServer};
use paddock::pb;
use paddock::provider::{KubernetesProvider, KubernetesSettings, ProvisionRequest};
use paddock::sandbox::SandboxSpec;

/// The provider's settings against `server`'s double, under `scope`.
fn settings(server: &TestServer, scope: &str) -> KubernetesSettings {
    settings_for(server.kubeconfig(), scope)
}

/// The provider's settings against the double `kubeconfig` names.
fn settings_for(kubeconfig: std::path::PathBuf, scope: &str) -> KubernetesSettings {
    let image = common::program_from("PADDOCK_TEST_IMAGE").unwrap();
    common::kube::settings(kubeconfig, scope, &image.display().to_string())
}

/// Makes and starts a sandbox object with no record, under `scope`.
async fn stray(provider: &Arc<KubernetesProvider>) -> String {
    use paddock::provider::Provider as _;
    let id = paddock::ids::new_sandbox_id();
    let mut spec = SandboxSpec {
        workdir: "/workspace".into(),
        ..SandboxSpec::default()
    };
    provider.prepare(&mut spec).await.unwrap();
    provider
        .create(ProvisionRequest {
            sandbox_id: &id,
            tenant: "someone",
            spec: &spec,
        })
        .await
        .unwrap();
    provider.start(&id).await.unwrap();
    id
}

#[tokio::test]
async fn a_killed_pod_stops_its_sandbox_and_orphans_of_this_scope_only_are_removed() {
    if !common::kube::available() {
        return;
    }
    let server = TestServer::for_provider(Provider::Kubernetes).await;
    let killed = server.running_sandbox(Default::default()).await;
    let kept = server.running_sandbox(Default::default()).await;
    assert!(common::docker::docker(&[
        "kill",
        &server.pod_container(&killed.id)
    ]));
    let stopped = server
        .wait_for_state(&killed.id, pb::SandboxState::Stopped)
        .await;
    assert!(
        stopped.state_reason.contains("exited with code 137"),
        "{}",
        stopped.state_reason
    );

    let ours = KubernetesProvider::open(settings(&server, &server.scope))
        .await
        .unwrap();
    let theirs = KubernetesProvider::open(settings(&server, "another-store"))
        .await
        .unwrap();
    let orphan = stray(&ours).await;
    let foreign = stray(&theirs).await;
    let server = server.restart().await;
    assert!(!server.pod_objects_exist(&orphan), "the orphan is removed");
    assert!(server.pod_objects_exist(&foreign), "another scope's is not");
    assert!(server.pod_objects_exist(&kept.id));
    assert_eq!(server.shell(&kept.id, "echo still").await, "still\n");
    // The killed sandbox starts again, its workdir kept.
    let mut sandboxes = server.sandboxes().await;
    sandboxes
        .start_sandbox(pb::StartSandboxRequest {
            sandbox_id: killed.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(server.shell(&killed.id, "echo up").await, "up\n");
    use paddock::provider::Provider as _;
    theirs.delete(&foreign).await.unwrap();
}

#[tokio::test]
async fn the_test_api_server_refuses_a_malformed_pod_and_access_beyond_the_role() {
    if !common::kube::available() {
        return;
    }
    let api = common::kube::KubeApi::start().unwrap();
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "malformed"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "restartPolicy": 7}]},
    });
    let (code, body) = api.post(
        &format!("/api/v1/namespaces/{}/pods", common::kube::NAMESPACE),
        &pod.to_string(),
    );
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("is invalid against Kubernetes"), "{body}");
    // And anything outside the provider's API_ACCESS is forbidden, as the
    // chart's Role would forbid it.
    let (code, body) = api.request(
        "GET",
        &format!(
            "/api/v1/namespaces/{}/secrets?watch=true",
            common::kube::NAMESPACE
        ),
    );
    assert_eq!(code, 403, "{body}");
}

#[tokio::test]
async fn a_lost_watch_asks_for_a_resync() {
    use paddock::provider::{Observation, Provider as _};
    if !common::kube::available() {
        return;
    }
    let server = TestServer::for_provider(Provider::Kubernetes).await;
    let provider = KubernetesProvider::open(settings(&server, "watching"))
        .await
        .unwrap();
    let mut observations = provider.observe().expect("it observes");
    // Let the first listing finish, then expire every watch.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (code, body) = common::kube::with_double(&server.kubeconfig(), |api| {
        api.post("/test-double/expire-watches", "{}")
    });
    assert_eq!(code, 200, "{body}");
    let resync = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            if let Observation::Resync = observations.recv().await.unwrap() {
                return;
            }
        }
    })
    .await;
    assert!(
        resync.is_ok(),
        "no resync within 20 s of the watch expiring"
    );
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_sandbox_saying_so() {
    if !common::kube::available() {
        return;
    }
    let server = TestServer::for_provider(Provider::Kubernetes).await;
    let created = server
        .sandboxes()
        .await
        .create_sandbox(pb::CreateSandboxRequest {
            image: "paddock-test/missing:1".into(),
            ..Default::default()
        })
        .await;
    let reason = match created {
        Err(status) => status.message().to_owned(),
        Ok(answer) => {
            let id = answer.into_inner().sandbox.unwrap().id;
            server
                .wait_for_state(&id, pb::SandboxState::Failed)
                .await
                .state_reason
        }
    };
    assert!(
        reason.contains("image \"paddock-test/missing:1\" could not be pulled"),
        "{reason}"
    );
}

#[tokio::test]
async fn agents_are_reached_over_v4_where_the_api_server_has_no_v5() {
    use paddock::provider::Provider as _;
    if !common::kube::available() {
        return;
    }
    let api = common::kube::KubeApi::speaking("v4.channel.k8s.io").unwrap();
    let provider = KubernetesProvider::open(settings_for(api.kubeconfig.clone(), "v4-only"))
        .await
        .unwrap();
    let id = stray(&provider).await;
    let agent = paddock::agent_client::AgentClient::new(provider.connect(&id).await.unwrap());
    let ran = agent
        .run_command(pb::RunCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(pb::CommandSpec {
                shell: "echo over v4".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ran.stdout, b"over v4\n");
    provider.delete(&id).await.unwrap();
}
