//! Warm pools on the process provider: a template's pool fills in the
//! background, hidden from its tenant; a create claims a pooled sandbox
//! with its name, labels, lifetime and env (which reaches every later
//! command); the pool refills; creates that change what the sandbox is
//! made of are made cold; a new version replaces the pool and deleting the
//! template drains it. Concurrent claims never share a sandbox (two
//! servers on one Postgres: tests/replicas.rs). Pods of the kubernetes
//! provider, through its test double, are claimed the same way.

use super::*;
use common::warm::{claim_at_once, pool_of, wait_until_ready, warm_template};
use paddock::pb::template_service_client::TemplateServiceClient;

async fn listed(server: &TestServer) -> Vec<String> {
    server
        .sandboxes()
        .await
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandboxes
        .into_iter()
        .map(|sandbox| sandbox.id)
        .collect()
}

/// The process provider's sandbox directories.
fn sandbox_directories(server: &TestServer) -> usize {
    std::fs::read_dir(server.data_dir.join("sandboxes"))
        .map(|entries| {
            entries
                .filter(|entry| {
                    entry
                        .as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("sbx_"))
                })
                .count()
        })
        .unwrap_or(0)
}

fn from(template: &str) -> pb::CreateSandboxRequest {
    pb::CreateSandboxRequest {
        template: template.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_warm_pool_is_claimed_at_once_refilled_replaced_and_drained() {
    let server = TestServer::start().await;
    let template = warm_template(&server, "warm", 3).await;
    assert_eq!(template.spec.as_ref().unwrap().warm_pool_size, 3);
    wait_until_ready(&server, "warm", 3).await;
    assert!(
        listed(&server).await.is_empty(),
        "pooled sandboxes are nobody's until claimed"
    );
    assert_eq!(sandbox_directories(&server), 3);

    let before = std::time::SystemTime::now();
    let mut request = from("warm");
    request.name = Some("first".into());
    request.labels = labels(&[("team", "a")]);
    let metadata = prost_types::Struct {
        fields: [(
            "note".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("claimed".into())),
            },
        )]
        .into(),
    };
    request.metadata = Some(metadata.clone());
    request.env = labels(&[("STAGE", "claim"), ("TOKEN", "s3cret")]);
    request.timeout = common::calls::seconds(600.0);
    let claimed = server.running_sandbox(request).await;
    assert_eq!(claimed.template, "warm@1");
    assert_eq!(claimed.name, "first");
    assert_eq!(claimed.labels, labels(&[("team", "a")]));
    assert_eq!(claimed.metadata, Some(metadata));
    let created = std::time::SystemTime::try_from(claimed.create_time.unwrap()).unwrap();
    assert!(created >= before, "a claim's create time is the claim's");
    let expires = std::time::SystemTime::try_from(claimed.expire_time.unwrap()).unwrap();
    let lifetime = expires.duration_since(created).unwrap();
    assert!(
        lifetime > Duration::from_secs(590) && lifetime <= Duration::from_secs(600),
        "{lifetime:?}"
    );
    let pool = pool_of(&server, "warm").await;
    assert_eq!((pool.hits, pool.misses), (1, 0), "{pool:?}");
    assert!(pool.last_refill_duration.is_some(), "{pool:?}");

    // The claim's env reaches commands, over the template's; the setup ran
    // once, before the claim.
    assert_eq!(
        server
            .shell(&claimed.id, "echo $STAGE $TOKEN; cat setup.log")
            .await,
        "claim s3cret\nset-up\n"
    );
    pb::exec_service_client::ExecServiceClient::new(server.channel().await)
        .start_command(pb::StartCommandRequest {
            sandbox_id: claimed.id.clone(),
            spec: Some(pb::CommandSpec {
                shell: "echo $TOKEN > started.txt".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    common::eventually(Duration::from_secs(10), "the started command", || async {
        let said = server
            .shell(&claimed.id, "cat started.txt 2>/dev/null || true")
            .await;
        (said == "s3cret\n").then_some(())
    })
    .await;
    assert_eq!(listed(&server).await, std::slice::from_ref(&claimed.id));
    wait_until_ready(&server, "warm", 3).await;

    // A retried request gets its sandbox again, and claims nothing more.
    let mut keyed = from("warm");
    keyed.request_id = "retry-me".into();
    let once = server.running_sandbox(keyed.clone()).await;
    let again = server.running_sandbox(keyed).await;
    assert_eq!(once.id, again.id);
    // A create that changes what the sandbox is made of is made cold, with
    // its own setup.
    let mut other = from("warm");
    other.workdir = "/elsewhere".into();
    let cold = server.running_sandbox(other).await;
    assert_eq!(
        server.shell(&cold.id, "pwd; cat setup.log").await,
        "/elsewhere\nset-up\n"
    );
    let pool = pool_of(&server, "warm").await;
    assert_eq!((pool.hits, pool.misses), (2, 0), "{pool:?}");

    // A new version replaces the pool.
    let mut templates = TemplateServiceClient::new(server.channel().await);
    templates
        .update_template(pb::UpdateTemplateRequest {
            name: "warm".into(),
            spec: Some(pb::TemplateSpec {
                env: labels(&[("STAGE", "v2")]),
                setup_command: "echo set-up-2 >> setup.log".into(),
                warm_pool_size: 2,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    wait_until_ready(&server, "warm", 2).await;
    let second = server.running_sandbox(from("warm")).await;
    assert_eq!(second.template, "warm@2");
    assert_eq!(
        server.shell(&second.id, "echo $STAGE; cat setup.log").await,
        "v2\nset-up-2\n"
    );

    // Deleting the template drains its pool; its tenant's sandboxes stay.
    templates
        .delete_template(pb::DeleteTemplateRequest {
            name: "warm".into(),
            force: true,
        })
        .await
        .unwrap();
    let mine = listed(&server).await.len();
    assert_eq!(mine, 4, "claimed and cold sandboxes stay");
    common::eventually(Duration::from_secs(30), "the pool to drain", || async {
        (sandbox_directories(&server) == mine).then_some(())
    })
    .await;
}

#[tokio::test]
async fn concurrent_claims_never_share_a_sandbox() {
    let server = TestServer::start().await;
    warm_template(&server, "busy", 5).await;
    wait_until_ready(&server, "busy", 5).await;
    claim_at_once(&[&server], "busy", 20).await;
    let pool = pool_of(&server, "busy").await;
    assert_eq!(pool.hits + pool.misses, 20, "{pool:?}");
    assert!(pool.hits >= 5, "the 5 ready ones were claimed: {pool:?}");
    assert_eq!(listed(&server).await.len(), 20);
}

#[tokio::test]
async fn warm_pool_sizes_are_bounded_per_template_and_per_tenant() {
    // A tenant allowed 4 running sandboxes keeps at most 4 warm.
    let server = TestServer::start_with(|args| {
        args.quota.quota_running_sandboxes = Some(4);
    })
    .await;
    let mut templates = TemplateServiceClient::new(server.channel().await);
    let pool = |name: &str, size: u32| pb::CreateTemplateRequest {
        name: name.into(),
        spec: Some(pb::TemplateSpec {
            warm_pool_size: size,
            ..Default::default()
        }),
    };
    let status = templates
        .create_template(pool("huge", 51))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("spec.warm_pool_size") && status.message().contains("50"),
        "{}",
        status.message()
    );
    templates.create_template(pool("three", 3)).await.unwrap();
    let status = templates.create_template(pool("two", 2)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("would keep 5 sandboxes warm")
            && status.message().contains("at most 4"),
        "{}",
        status.message()
    );
    // A template's own new version replaces its pool rather than adding one.
    templates
        .update_template(pb::UpdateTemplateRequest {
            name: "three".into(),
            spec: pool("three", 4).spec,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pool_whose_setup_fails_rests_instead_of_churning() {
    let server = TestServer::start().await;
    TemplateServiceClient::new(server.channel().await)
        .create_template(pb::CreateTemplateRequest {
            name: "broken".into(),
            spec: Some(pb::TemplateSpec {
                setup_command: "echo no luck; exit 3".into(),
                warm_pool_size: 2,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    // One failed try, then a rest: not one a second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pool = pool_of(&server, "broken").await;
    assert_eq!(pool.failures, 1, "{pool:?}");
    assert!(pool.last_failure.contains("no luck"), "{pool:?}");
    assert_eq!((pool.ready, pool.starting), (0, 0), "{pool:?}");

    // A create finds none ready, and fails as a cold one would.
    let failed = server.create(from("broken")).await;
    assert_eq!(failed.state, pb::SandboxState::Failed as i32);
    assert!(
        failed.state_reason.contains("no luck"),
        "{}",
        failed.state_reason
    );
    assert_eq!(pool_of(&server, "broken").await.misses, 1);
}

#[tokio::test]
async fn kubernetes_warm_pods_are_claimed_with_their_env() {
    if !common::kube::available() {
        return;
    }
    let server = TestServer::for_provider(common::Provider::Kubernetes).await;
    warm_template(&server, "warm-pods", 2).await;
    wait_until_ready(&server, "warm-pods", 2).await;
    let mut request = from("warm-pods");
    request.env = labels(&[("WHO", "pod")]);
    let claimed = server.running_sandbox(request).await;
    assert_eq!(
        server
            .shell(&claimed.id, "echo $STAGE $WHO; cat setup.log")
            .await,
        "template pod\nset-up\n"
    );
    assert_eq!(pool_of(&server, "warm-pods").await.hits, 1);
    assert_eq!(listed(&server).await, std::slice::from_ref(&claimed.id));
}
