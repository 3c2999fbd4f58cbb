//! Restarting the Docker daemon under a running server: the server survives,
//! loses no record, and its records stay true.
//!
//! This restarts the engine every other Docker test uses, so it is a test
//! binary of its own: cargo runs test binaries one after another.
//! `PADDOCK_TEST_DOCKERD_RESTART` names a command that restarts the daemon;
//! without it the test stops `dockerd` with SIGTERM and starts it again in the
//! background (as scripts/test started it), which needs root.

mod common;

use std::process::Command;
use std::time::Duration;

use common::docker::{self, BUSYBOX, docker_output};
use common::{Provider, TestServer, eventually};
use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;

fn restart_dockerd() {
    if let Ok(command) = std::env::var("PADDOCK_TEST_DOCKERD_RESTART") {
        let status = Command::new("sh").args(["-c", &command]).status().unwrap();
        assert!(status.success(), "{command} failed");
        return;
    }
    let pid: i32 = std::fs::read_to_string("/var/run/docker.pid")
        .expect("dockerd's pid file (or set PADDOCK_TEST_DOCKERD_RESTART)")
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill takes plain integers.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGTERM) },
        0,
        "cannot signal dockerd"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(std::time::Instant::now() < deadline, "dockerd did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::env::var("DOCKERD_LOG").unwrap_or_else(|_| "/tmp/paddock-dockerd.log".into());
    let status = Command::new("sh")
        .args(["-c", &format!("nohup dockerd >>'{log}' 2>&1 &")])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn restarting_dockerd_neither_crashes_the_server_nor_falsifies_records() {
    if !docker::available() {
        return;
    }
    let server = TestServer::for_provider(Provider::Docker).await;
    let mut sandboxes = server.sandboxes().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let sandbox = sandboxes
            .create_sandbox(pb::CreateSandboxRequest {
                image: BUSYBOX.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .sandbox
            .unwrap();
        ids.push(sandbox.id);
    }
    sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: ids[1].clone(),
        })
        .await
        .unwrap();

    restart_dockerd();
    eventually(
        Duration::from_secs(60),
        "the engine to answer again",
        || async { docker::docker(&["version"]).then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the server to see the engine again",
        || async { server.provider("docker").await.available.then_some(()) },
    )
    .await;

    // Every record is still there and settles in a state that is true of
    // its container: RUNNING with a running container whose agent answers,
    // or STOPPED with a stopped one. The server checks every sandbox again
    // once it sees the engine back, which takes a moment after the engine
    // answers: the record and its container must come to agree.
    let mut exec = ExecServiceClient::new(server.channel().await);
    for id in &ids {
        let (sandbox, running) = eventually(
            Duration::from_secs(60),
            &format!("the record of {id} and its container to agree"),
            || {
                let mut sandboxes = sandboxes.clone();
                let id = id.clone();
                async move {
                    let sandbox = sandboxes
                        .get_sandbox(pb::GetSandboxRequest {
                            sandbox_id: id.clone(),
                        })
                        .await
                        .ok()?
                        .into_inner()
                        .sandbox?;
                    let state = pb::SandboxState::try_from(sandbox.state).ok()?;
                    let running = docker_output(&[
                        "inspect",
                        "--format",
                        "{{.State.Running}}",
                        &format!("paddock-{id}"),
                    ]);
                    let agree = match state {
                        pb::SandboxState::Running => running == "true",
                        pb::SandboxState::Stopped => running == "false",
                        _ => false,
                    };
                    agree.then_some((sandbox, running))
                }
            },
        )
        .await;
        if sandbox.state == pb::SandboxState::Running as i32 {
            assert_eq!(running, "true", "{id} is RUNNING but its container is not");
            let ran = exec
                .run_command(pb::RunCommandRequest {
                    sandbox_id: id.clone(),
                    spec: Some(pb::CommandSpec {
                        command: vec!["true".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(ran.exit_code, Some(0));
        } else {
            assert_eq!(running, "false", "{id} is STOPPED but its container runs");
        }
    }
    // The sandbox stopped before the restart is still STOPPED and starts.
    let started = sandboxes
        .start_sandbox(pb::StartSandboxRequest {
            sandbox_id: ids[1].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(started.state, pb::SandboxState::Running as i32);
    let all = common::every_sandbox(&mut sandboxes).await;
    assert_eq!(all.len(), 2, "no record lost or added");
}
