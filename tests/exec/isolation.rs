//! What the process provider's bubblewrap confinement holds.

use super::*;

/// Whether the process provider confines sandboxes with bubblewrap here.
/// Under CI=true it must (scripts/test installs bubblewrap).
async fn confined(server: &TestServer) -> bool {
    let providers = server
        .sandboxes()
        .await
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    let process = providers
        .iter()
        .find(|p| p.name == "process")
        .expect("the process provider is listed");
    let confined = process.isolation.starts_with("bubblewrap");
    if !confined {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !in_ci,
            "bubblewrap is unavailable, and CI=true forbids skipping the isolation tests"
        );
        eprintln!("SKIPPED: isolation test; install bubblewrap (bwrap) to run it");
    }
    confined
}

#[tokio::test]
async fn bubblewrap_gives_each_sandbox_its_own_namespaces() {
    let server = TestServer::start().await;
    if !confined(&server).await {
        return;
    }
    let mut sandboxes = server.sandboxes().await;
    let offline = sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            network: pb::NetworkMode::None as i32,
            workdir: "/work/project".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap()
        .id;
    let mut client = exec_client(&server).await;
    let ran = client
        .run_command(pb::RunCommandRequest {
            sandbox_id: offline.clone(),
            spec: Some(pb::CommandSpec {
                shell: "hostname; pwd; echo $$; ls /proc | grep -c '^[0-9]'; \
                    grep -c : /proc/net/dev; echo made > here; touch /etc/paddock-escape"
                    .into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let stdout = String::from_utf8(ran.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "sandbox", "its own host name");
    assert_eq!(lines[1], "/work/project", "the workdir at its sandbox path");
    assert!(
        lines[3].parse::<u32>().unwrap() <= 5,
        "only its own processes: {stdout}"
    );
    assert_eq!(lines[4], "1", "loopback only with NETWORK_MODE_NONE");
    assert!(
        String::from_utf8_lossy(&ran.stderr).contains("Read-only file system"),
        "the host's files are read-only: {:?}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(!std::path::Path::new("/etc/paddock-escape").exists());
    assert_eq!(
        std::fs::read_to_string(
            server
                .sandbox_dir(&offline)
                .join("rootfs/work/project/here")
        )
        .unwrap(),
        "made\n",
        "the workdir is the sandbox's own directory"
    );

    // KillProcesses reaches processes that left their command's group.
    let escaped = client
        .start_command(pb::StartCommandRequest {
            sandbox_id: offline.clone(),
            spec: Some(shell_spec("setsid sleep 100 & sleep 100")),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    client
        .kill_processes(pb::KillProcessesRequest {
            sandbox_id: offline.clone(),
            signal: String::new(),
        })
        .await
        .unwrap();
    wait_until_ended(&mut client, &offline, &escaped.id).await;
    let left = client
        .run_command(pb::RunCommandRequest {
            sandbox_id: offline.clone(),
            spec: Some(pb::CommandSpec {
                shell: "ps -e -o comm= | grep -c sleep || true".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(String::from_utf8(left.stdout).unwrap().trim(), "0");
}
