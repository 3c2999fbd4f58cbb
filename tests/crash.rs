//! A server killed with SIGKILL while sandboxes are being created leaves,
//! after a restart, no record stuck mid-transition and no orphan sandbox.

mod common;

use std::path::Path;
use std::time::Duration;

use common::eventually;
use common::spawned::ServerProcess;
use paddock::pb;
use paddock::sandbox::{DEFAULT_TENANT, SandboxState};
use paddock::store::{SandboxQuery, SqlStore, Store};

const CREATES: usize = 20;

async fn records_in(data_dir: &Path, states: &[SandboxState]) -> usize {
    let store = SqlStore::connect(&SqlStore::sqlite_url(&data_dir.join("paddock.db")))
        .await
        .unwrap();
    store
        .list_sandboxes(&SandboxQuery {
            tenant: Some(DEFAULT_TENANT.into()),
            states: states.to_vec(),
            limit: 1000,
            ..SandboxQuery::default()
        })
        .await
        .unwrap()
        .len()
}

fn sandbox_dirs(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("sandboxes"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn sigkill_during_creates_leaves_nothing_stuck_or_orphaned() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path();
    // Every create is held at the gate after its provider made the sandbox's
    // object, so all are in flight when the server dies.
    let gate = common::spawned::Gate::new();
    let mut server = ServerProcess::spawn_with(data_dir, &[gate.env()]);
    let client = server.client().await;
    let mut creates = Vec::new();
    for i in 0..CREATES {
        let mut client = client.clone();
        creates.push(tokio::spawn(async move {
            client
                .create_sandbox(pb::CreateSandboxRequest {
                    name: Some(format!("crash-{i}")),
                    ..Default::default()
                })
                .await
        }));
    }
    eventually(
        Duration::from_secs(60),
        "every create to reach the gate",
        || async { (gate.arrivals() == CREATES).then_some(()) },
    )
    .await;
    server.kill();
    for create in creates {
        assert!(
            create.await.unwrap().is_err(),
            "no create can have finished"
        );
    }

    // The crash really left work half-done...
    let transient = [SandboxState::Pending, SandboxState::Starting];
    assert_eq!(records_in(data_dir, &transient).await, CREATES);
    // ...and an orphan: a sandbox directory that no record owns.
    let orphan = paddock::ids::new_sandbox_id();
    let orphan_dir = data_dir.join("sandboxes").join(&orphan);
    std::fs::create_dir_all(orphan_dir.join("rootfs")).unwrap();
    std::fs::write(
        orphan_dir.join("sandbox.json"),
        format!(
            r#"{{"sandbox_id":"{orphan}","tenant":"default","workdir":"/workspace","no_network":false,"running":true}}"#
        ),
    )
    .unwrap();

    // Restart: reconciliation settles every record and removes the orphan.
    let server = ServerProcess::spawn(data_dir);
    let mut client = server.client().await;
    let all = common::every_sandbox(&mut client).await;
    assert_eq!(all.len(), CREATES);
    for sandbox in &all {
        assert_eq!(
            sandbox.state,
            pb::SandboxState::Running as i32,
            "{} ended {:?}: {}",
            sandbox.id,
            sandbox.state,
            sandbox.state_reason
        );
    }
    assert_eq!(records_in(data_dir, &transient).await, 0);

    let mut live: Vec<String> = all.iter().map(|s| s.id.clone()).collect();
    live.sort();
    assert_eq!(
        sandbox_dirs(data_dir),
        live,
        "exactly one directory per live record: no orphan, no leftover"
    );
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let temp = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(temp.path());
    let mut client = server.client().await;
    client
        .create_sandbox(pb::CreateSandboxRequest::default())
        .await
        .unwrap();
    // SAFETY: kill(2) with a child's pid has no memory effects.
    let sent = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}
