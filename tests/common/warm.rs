//! Warm pools from the outside: a template that keeps sandboxes warm, a
//! wait until its pool is full, and many creates claiming from it at once.

use std::collections::HashSet;
use std::time::Duration;

use paddock::pb;
use paddock::pb::template_service_client::TemplateServiceClient;

use super::TestServer;

/// How long a pool of a few process sandboxes may take to fill.
const FILL_WITHIN: Duration = Duration::from_secs(90);

/// Makes template `name` keeping `size` sandboxes warm, with `STAGE=template`
/// in its env and a setup that leaves a line in `setup.log`.
pub async fn warm_template(server: &TestServer, name: &str, size: u32) -> pb::Template {
    TemplateServiceClient::new(server.channel().await)
        .create_template(pb::CreateTemplateRequest {
            name: name.into(),
            spec: Some(pb::TemplateSpec {
                env: [("STAGE".to_owned(), "template".to_owned())].into(),
                setup_command: "echo set-up >> setup.log".into(),
                warm_pool_size: size,
                ..Default::default()
            }),
        })
        .await
        .expect("CreateTemplate succeeds")
        .into_inner()
        .template
        .unwrap()
}

/// The warm pool of `server`'s template `name` now.
pub async fn pool_of(server: &TestServer, name: &str) -> pb::WarmPool {
    TemplateServiceClient::new(server.channel().await)
        .get_template(pb::GetTemplateRequest { name: name.into() })
        .await
        .expect("GetTemplate succeeds")
        .into_inner()
        .template
        .unwrap()
        .warm_pool
        .expect("a template with a pool shows it")
}

/// Waits until template `name`'s pool holds `ready` sandboxes ready to
/// claim and none being made.
pub async fn wait_until_ready(server: &TestServer, name: &str, ready: u32) -> pb::WarmPool {
    super::eventually(FILL_WITHIN, "the warm pool to fill", || async {
        let pool = pool_of(server, name).await;
        (pool.ready == ready && pool.starting == 0).then_some(pool)
    })
    .await
}

/// `count` creates from template `name` at once, spread over `servers` in
/// turn, each with `ID=<its number>` in its env; requires every one RUNNING,
/// each sandbox a different one, and each answering with its own env.
/// Returns the sandboxes in request order.
pub async fn claim_at_once(servers: &[&TestServer], name: &str, count: usize) -> Vec<pb::Sandbox> {
    let mut creates = Vec::new();
    for number in 0..count {
        let server = servers[number % servers.len()];
        let mut client = server.sandboxes().await;
        let request = pb::CreateSandboxRequest {
            template: name.into(),
            name: Some(format!("claim-{number}")),
            env: [("ID".to_owned(), number.to_string())].into(),
            ..Default::default()
        };
        creates.push(tokio::spawn(
            async move { client.create_sandbox(request).await },
        ));
    }
    let mut made = Vec::new();
    for create in creates {
        let sandbox = create
            .await
            .unwrap()
            .expect("a create from a warm template succeeds")
            .into_inner()
            .sandbox
            .unwrap();
        assert_eq!(
            sandbox.state,
            pb::SandboxState::Running as i32,
            "{}",
            sandbox.state_reason
        );
        made.push(sandbox);
    }
    let distinct: HashSet<&str> = made.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        distinct.len(),
        count,
        "a sandbox was claimed twice: {made:?}"
    );
    for (number, sandbox) in made.iter().enumerate() {
        assert_eq!(sandbox.name, format!("claim-{number}"));
        let server = servers[number % servers.len()];
        assert_eq!(
            server
                .shell(&sandbox.id, "echo $ID $STAGE; cat setup.log")
                .await,
            format!("{number} template\nset-up\n"),
            "{}",
            sandbox.id
        );
    }
    made
}
