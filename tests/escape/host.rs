//! Reaching down: mounts, device nodes, raw sockets, setuid binaries, and
//! exhausting processes and memory, from inside a sandbox.

use super::*;

/// A static program printing its effective uid: copied into a sandbox and
/// made setuid root, it shows whether a setuid binary raises privileges.
fn euid_probe() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("euid.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\n#include <unistd.h>\n\
         int main(void) { printf(\"euid=%d\\n\", (int)geteuid()); return 0; }\n",
    )
    .unwrap();
    let binary = dir.path().join("euid");
    let built = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("cc runs");
    assert!(
        built.status.success(),
        "cc -static: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    std::fs::read(binary).unwrap()
}

/// Privileged operations a sandbox's root must not be able to do, each
/// printing `ESCAPED <what>` only if it worked.
const PRIVILEGED_ATTEMPTS: &str = "\
    mkdir -p /tmp/m && mount -t tmpfs none /tmp/m 2>/dev/null && echo ESCAPED mount; \
    mknod /tmp/disk b 8 0 2>/dev/null && head -c 512 /tmp/disk >/dev/null 2>&1 && echo ESCAPED mknod; \
    busybox arping -c 1 -w 1 -I lo 127.0.0.1 >/dev/null 2>&1 && echo ESCAPED raw-socket; \
    echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && echo ESCAPED proc-sys; \
    cat /proc/kcore >/dev/null 2>&1 && echo ESCAPED kcore; \
    grep CapEff /proc/self/status";

#[tokio::test]
async fn docker_sandboxes_cannot_use_privileges_or_exhaust_the_host() {
    if !common::docker::available() || !privileged() {
        return;
    }
    let server = exposed_server(Provider::Docker, |_| {}).await;
    let mut alpha = Tenant::of(&server, "alpha").await;
    // gVisor's own kernel needs more of the engine's PID limit.
    let gvisor = common::docker::runtime().is_some_and(|runtime| runtime == "runsc");
    let sandbox = alpha
        .sandbox(pb::CreateSandboxRequest {
            resources: Some(pb::Resources {
                pids: if gvisor { 256 } else { 64 },
                memory_bytes: 64 << 20,
                cpu_millis: 500,
            }),
            ..Default::default()
        })
        .await;

    holds_only_the_documented_privileges(&mut alpha, &sandbox).await;

    if gvisor {
        exhaustion_under_gvisor(&server, &mut alpha, sandbox).await;
        return;
    }

    // A fork bomb meets the PID limit and ends with its command.
    let bomb = alpha
        .exec
        .run_command(fork_bomb(&sandbox))
        .await
        .unwrap()
        .into_inner();
    let said = String::from_utf8_lossy(&bomb.stderr);
    let said = &said[..said.len().min(300)];
    assert!(
        bomb.timed_out,
        "exit {:?}, signal {:?}: {said}",
        bomb.exit_code, bomb.signal
    );
    assert!(
        said.contains("can't fork"),
        "the bomb met the PID limit: {said}"
    );
    alpha.still_healthy(&sandbox).await;
    let count = alpha
        .run(&sandbox, "ls /proc | grep -c '^[0-9]'")
        .await
        .stdout;
    assert!(
        count.trim().parse::<u32>().unwrap() < 10,
        "the bomb's processes ended with it: {count}"
    );

    // A memory balloon is killed at the memory limit, not the agent.
    let balloon = alpha.run(&sandbox, BALLOON).await;
    assert_ne!(balloon.exit_code, Some(0), "{balloon:?}");
    alpha.still_healthy(&sandbox).await;
    assert_serving(&server).await;
}

/// Root in `sandbox` cannot mount, make devices, open raw sockets or write
/// kernel settings, holds none of the dangerous capabilities, and a
/// setuid-root binary run by another user gains nothing.
async fn holds_only_the_documented_privileges(alpha: &mut Tenant, sandbox: &str) {
    let ran = alpha.run(sandbox, PRIVILEGED_ATTEMPTS).await;
    assert!(!ran.stdout.contains("ESCAPED"), "{ran:?}");
    // Only the documented capabilities, none of the dangerous ones.
    let caps = u64::from_str_radix(
        ran.stdout
            .trim()
            .rsplit('\t')
            .next()
            .expect("a CapEff line"),
        16,
    )
    .unwrap();
    for (bit, name) in [
        (27, "MKNOD"),
        (13, "NET_RAW"),
        (21, "SYS_ADMIN"),
        (12, "NET_ADMIN"),
        (19, "SYS_PTRACE"),
    ] {
        assert_eq!(caps & (1 << bit), 0, "CAP_{name} in {caps:x}");
    }
    alpha
        .files
        .write_file(pb::WriteFileRequest {
            sandbox_id: sandbox.to_owned(),
            path: "/tmp/euid".into(),
            content: euid_probe(),
            mode: 0o755,
            ..Default::default()
        })
        .await
        .unwrap();
    let root = alpha
        .run(
            sandbox,
            "chown 0:0 /tmp/euid && chmod 4755 /tmp/euid && /tmp/euid",
        )
        .await;
    assert_eq!(root.stdout, "euid=0\n", "the probe works: {root:?}");
    let other = alpha.run_as(sandbox, "4242", "/tmp/euid").await;
    assert_eq!(other.stdout, "euid=4242\n", "no-new-privileges: {other:?}");
}

/// Allocates four times the test sandboxes' memory limit.
const BALLOON: &str = "busybox dd if=/dev/zero of=/dev/null bs=256M count=1";

/// A fork bomb whose leader outlives failed forks, so that its 5 s timeout
/// ends the whole process group, bomb and all. The leader forks only while
/// the bomb is small and then becomes `sleep` by `exec`: a shell whose own
/// fork fails at the PID limit exits with status 2 (busybox ash does), which
/// would end the command before its timeout.
fn fork_bomb(sandbox_id: &str) -> pb::RunCommandRequest {
    pb::RunCommandRequest {
        sandbox_id: sandbox_id.into(),
        spec: Some(pb::CommandSpec {
            shell: "bomb() { bomb | bomb & }; bomb; exec sleep 60".into(),
            timeout: common::calls::seconds(5.0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn assert_serving(server: &TestServer) {
    let health = server
        .health()
        .await
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "the server is SERVING");
}

/// Under gVisor the engine's PID and memory limits bound gVisor's kernel as
/// a whole, not each process in it: a fork bomb or a balloon ends the
/// sandbox rather than one command. What must hold is containment: the call
/// ends instead of hanging, the sandbox is either still healthy or STOPPED
/// with the reason, and the server and a bystander sandbox carry on.
async fn exhaustion_under_gvisor(server: &TestServer, alpha: &mut Tenant, sandbox: String) {
    let bystander = alpha.sandbox(Default::default()).await;
    let mut target = sandbox;
    for (what, attack) in [
        ("fork bomb", fork_bomb(&target)),
        ("balloon", {
            let mut request = fork_bomb(&target);
            request.spec.as_mut().expect("a spec").shell = BALLOON.into();
            request
        }),
    ] {
        let attack = pb::RunCommandRequest {
            sandbox_id: target.clone(),
            ..attack
        };
        let ended = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            alpha.exec.run_command(attack),
        )
        .await;
        assert!(ended.is_ok(), "the {what}'s call hung");
        // Settled: STOPPED, or RUNNING and answering (a dying sandbox can
        // still read RUNNING for a moment).
        let state = common::eventually(
            std::time::Duration::from_secs(30),
            "the sandbox to settle",
            || {
                let mut sandboxes = alpha.sandboxes.clone();
                let mut exec = alpha.exec.clone();
                let id = target.clone();
                async move {
                    let sandbox = sandboxes
                        .get_sandbox(pb::GetSandboxRequest {
                            sandbox_id: id.clone(),
                        })
                        .await
                        .ok()?
                        .into_inner()
                        .sandbox?;
                    if sandbox.state == pb::SandboxState::Stopped as i32 {
                        return Some(sandbox);
                    }
                    let answered = exec
                        .run_command(pb::RunCommandRequest {
                            sandbox_id: id,
                            spec: Some(pb::CommandSpec {
                                shell: "true".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .await
                        .is_ok();
                    (answered && sandbox.state == pb::SandboxState::Running as i32)
                        .then_some(sandbox)
                }
            },
        )
        .await;
        if state.state == pb::SandboxState::Running as i32 {
            alpha.still_healthy(&target).await;
        } else {
            assert!(!state.state_reason.is_empty(), "STOPPED says why");
            eprintln!(
                "under gVisor the {what} stopped its sandbox: {}",
                state.state_reason
            );
            target = alpha
                .sandbox(pb::CreateSandboxRequest {
                    resources: Some(pb::Resources {
                        memory_bytes: 64 << 20,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await;
        }
    }
    alpha.still_healthy(&bystander).await;
    assert_serving(server).await;
}

#[tokio::test]
async fn process_sandboxes_hold_no_privileges() {
    if !privileged() {
        return;
    }
    let server = exposed_server(Provider::Process, |_| {}).await;
    let mut alpha = Tenant::of(&server, "alpha").await;
    let sandbox = alpha.sandbox(Default::default()).await;
    let ran = alpha.run(&sandbox, PRIVILEGED_ATTEMPTS).await;
    assert!(!ran.stdout.contains("ESCAPED"), "{ran:?}");
    assert!(
        ran.stdout.trim().ends_with("0000000000000000"),
        "bubblewrap leaves commands no capabilities: {ran:?}"
    );
    alpha.still_healthy(&sandbox).await;
}

/// A pod sandbox on the test API server (whose kubelet makes the pod's
/// container on the test engine from the pod's securityContext and limits,
/// as a container runtime would): root in it holds only the documented
/// capabilities, a setuid binary raises nothing (allowPrivilegeEscalation:
/// false), and a memory balloon dies at the pod's limit, not the agent. The
/// pod's network is the cluster's to enforce and is not tried here.
#[tokio::test]
async fn kubernetes_pods_hold_only_their_capabilities_and_memory() {
    if !common::kube::available() || !privileged() {
        return;
    }
    let server = exposed_server(Provider::Kubernetes, |_| {}).await;
    let mut alpha = Tenant::of(&server, "alpha").await;
    let sandbox = alpha
        .sandbox(pb::CreateSandboxRequest {
            resources: Some(pb::Resources {
                memory_bytes: 64 << 20,
                cpu_millis: 500,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    holds_only_the_documented_privileges(&mut alpha, &sandbox).await;
    let balloon = alpha.run(&sandbox, BALLOON).await;
    assert_ne!(balloon.exit_code, Some(0), "{balloon:?}");
    alpha.still_healthy(&sandbox).await;
    assert_serving(&server).await;
}
