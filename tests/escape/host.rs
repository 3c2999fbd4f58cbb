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
    mknod /tmp/disk b 8 0 2>/dev/null && echo ESCAPED mknod; \
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
    let sandbox = alpha
        .sandbox(pb::CreateSandboxRequest {
            resources: Some(pb::Resources {
                pids: 64,
                memory_bytes: 64 << 20,
                cpu_millis: 500,
            }),
            ..Default::default()
        })
        .await;

    let ran = alpha.run(&sandbox, PRIVILEGED_ATTEMPTS).await;
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
    ] {
        assert_eq!(caps & (1 << bit), 0, "CAP_{name} in {caps:x}");
    }

    // A setuid-root binary run by another user gains nothing.
    alpha
        .files
        .write_file(pb::WriteFileRequest {
            sandbox_id: sandbox.clone(),
            path: "/tmp/euid".into(),
            content: euid_probe(),
            mode: 0o755,
            ..Default::default()
        })
        .await
        .unwrap();
    let root = alpha
        .run(
            &sandbox,
            "chown 0:0 /tmp/euid && chmod 4755 /tmp/euid && /tmp/euid",
        )
        .await;
    assert_eq!(root.stdout, "euid=0\n", "the probe works: {root:?}");
    let other = alpha.run_as(&sandbox, "4242", "/tmp/euid").await;
    assert_eq!(other.stdout, "euid=4242\n", "no-new-privileges: {other:?}");

    // A fork bomb meets the PID limit and ends with its command.
    let bomb = alpha
        .exec
        .run_command(pb::RunCommandRequest {
            sandbox_id: sandbox.clone(),
            // The leader outlives failed forks, so that the timeout ends
            // the whole process group, bomb and all.
            shell: "bomb() { bomb | bomb & }; bomb; while :; do sleep 1 || :; done".into(),
            timeout: common::calls::seconds(5.0),
            ..Default::default()
        })
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
    let balloon = alpha
        .run(
            &sandbox,
            "busybox dd if=/dev/zero of=/dev/null bs=256M count=1",
        )
        .await;
    assert_ne!(balloon.exit_code, Some(0), "{balloon:?}");
    alpha.still_healthy(&sandbox).await;
    let health = server
        .health()
        .await
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "the server is SERVING");
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
