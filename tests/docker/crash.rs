//! A server killed while creating containers leaves no orphan and nothing
//! stuck.

use super::*;

#[tokio::test]
async fn sigkill_during_docker_creates_leaves_no_orphan_and_nothing_stuck() {
    if !docker::available() {
        return;
    }
    const CREATES: usize = 20;
    let temp = tempfile::tempdir().unwrap();
    let agent = docker::agent_binary();
    let env = [
        ("PADDOCK_PROVIDER", "docker"),
        ("PADDOCK_DOCKER_DEFAULT_IMAGE", BUSYBOX),
        ("PADDOCK_DOCKER_AGENT_BINARY", agent.to_str().unwrap()),
    ];
    // Each create is held at the gate after making its container, so the
    // server dies with containers made and records not yet RUNNING.
    let gate = common::spawned::Gate::new();
    let mut server = ServerProcess::spawn_with(temp.path(), &[&env[..], &[gate.env()]].concat());
    let client = server.client().await;
    let mut creates = Vec::new();
    for _ in 0..CREATES {
        let mut client = client.clone();
        creates.push(tokio::spawn(async move {
            client
                .create_sandbox(pb::CreateSandboxRequest::default())
                .await
        }));
    }
    let scope = paddock::store::SqlStore::connect(&paddock::store::SqlStore::sqlite_url(
        &temp.path().join("paddock.db"),
    ))
    .await
    .unwrap()
    .store_id()
    .await
    .unwrap();
    eventually(
        Duration::from_secs(60),
        "every container to be made and its create held at the gate",
        || async {
            if gate.arrivals() < CREATES {
                return None;
            }
            let made = docker_output(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=io.paddock.scope={scope}"),
            ])
            .lines()
            .count();
            (made == CREATES).then_some(())
        },
    )
    .await;
    let _cleanup = docker::RemoveContainers(scope.clone());
    server.kill();
    for create in creates {
        assert!(
            create.await.unwrap().is_err(),
            "no create can have finished"
        );
    }
    // And an orphan: a container of this store that no record owns.
    let orphan = paddock::ids::new_sandbox_id();
    docker_output(&[
        "create",
        "--name",
        &format!("paddock-{orphan}"),
        "--label",
        &format!("io.paddock.scope={scope}"),
        "--label",
        "io.paddock.role=sandbox",
        "--label",
        &format!("io.paddock.sandbox-id={orphan}"),
        "--label",
        "io.paddock.tenant=default",
        BUSYBOX,
        "sleep",
        "600",
    ]);

    let server = ServerProcess::spawn_with(temp.path(), &env);
    let mut client = server.client().await;
    let all = common::every_sandbox(&mut client).await;
    assert_eq!(all.len(), CREATES);
    for sandbox in &all {
        // Every create was cut short after making its container: the
        // restart finishes each one.
        assert_eq!(
            sandbox.state,
            pb::SandboxState::Running as i32,
            "{} is {:?}: {}",
            sandbox.id,
            sandbox.state,
            sandbox.state_reason
        );
    }
    let mut live: Vec<String> = all.iter().map(|s| format!("paddock-{}", s.id)).collect();
    live.sort();
    let mut containers: Vec<String> = docker_output(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.paddock.scope={scope}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(str::to_owned)
    .collect();
    containers.sort();
    assert_eq!(containers, live, "one container per live record, no orphan");
    assert!(containers_of(&orphan).is_empty(), "the orphan is removed");
}
