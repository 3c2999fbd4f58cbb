//! The statically linked agent runs as PID 1 of a root that holds nothing
//! but itself: no libc, no shell. `scripts/build-static-agent` builds it and
//! `PADDOCK_STATIC_AGENT` names it; CI always does.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{connect, eventually};
use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use paddock::server::BoundAddr;

fn static_agent() -> Option<PathBuf> {
    match std::env::var_os("PADDOCK_STATIC_AGENT") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !in_ci,
                "PADDOCK_STATIC_AGENT is not set, and CI=true forbids skipping; run scripts/test"
            );
            eprintln!("SKIPPED: set PADDOCK_STATIC_AGENT (scripts/build-static-agent prints it)");
            None
        }
    }
}

#[tokio::test]
async fn the_static_agent_serves_from_an_empty_root() {
    let Some(agent) = static_agent() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new("bwrap")
        .arg("--bind")
        .arg(root.path())
        .arg("/")
        .arg("--ro-bind")
        .arg(&agent)
        .arg("/paddock")
        .arg("--bind")
        .arg(state.path())
        .arg("/state")
        .args([
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--unshare-all",
            "--as-pid-1",
        ])
        .arg("--die-with-parent")
        .args(["/paddock", "agent", "--socket", "/state/agent.sock"])
        .args(["--sandbox-id", "sbx_0123456789abcdef0123456789abcdef"])
        .args(["--state-dir", "/state/agent", "--workdir", "/"])
        .stdout(Stdio::null())
        .spawn()
        .expect("bwrap runs (scripts/test installs bubblewrap)");
    let socket = state.path().join("agent.sock");
    eventually(Duration::from_secs(10), "the agent's socket", || {
        let socket = socket.clone();
        async move { socket.exists().then_some(()) }
    })
    .await;
    let mut client = ExecServiceClient::new(connect(&BoundAddr::Unix(socket)).await);

    let ran = client
        .run_command(pb::RunCommandRequest {
            spec: Some(pb::CommandSpec {
                command: vec!["/paddock".into(), "--version".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ran.exit_code, Some(0));
    assert!(
        String::from_utf8(ran.stdout)
            .unwrap()
            .starts_with("paddock ")
    );

    let status = client
        .run_command(pb::RunCommandRequest {
            spec: Some(pb::CommandSpec {
                shell: "echo no shell here".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        status.message()
    );

    let _ = child.kill();
    let _ = child.wait();
}
