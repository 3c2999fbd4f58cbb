//! A real Docker engine for tests: the test script starts `dockerd`, builds
//! the test images (scripts/test-images) and the static agent, and sets
//! `PADDOCK_STATIC_AGENT` to it.
//!
//! When any of that is missing, Docker tests are skipped with a loud notice,
//! except under `CI=true`, where they fail: CI must never skip them.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The variable naming the static agent binary.
pub const AGENT_VARIABLE: &str = "PADDOCK_STATIC_AGENT";
/// An image with busybox and /bin/sh.
pub const BUSYBOX: &str = "paddock-test/busybox:latest";
/// An image with no shell at all.
pub const NO_SHELL: &str = "paddock-test/noshell:latest";
/// Busybox whose `USER` is alice (uid 1000, gid 1000, home /home/alice).
pub const USER_ALICE: &str = "paddock-test/user:1";

/// The variable naming the runtime Docker sandboxes run under in tests
/// (scripts/test runs the exec, files and escape suites again with "runsc").
pub const RUNTIME_VARIABLE: &str = "PADDOCK_TEST_DOCKER_RUNTIME";

/// The runtime Docker sandboxes run under in this test run; `None`: the
/// engine's default.
pub fn runtime() -> Option<String> {
    std::env::var(RUNTIME_VARIABLE)
        .ok()
        .filter(|name| !name.is_empty())
}

/// Whether Docker tests can run here. Panics under CI when they cannot.
pub fn available() -> bool {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if std::env::var_os(AGENT_VARIABLE).is_none() {
            return Err(format!(
                "{AGENT_VARIABLE} is not set (build it with scripts/build-static-agent)"
            ));
        }
        for image in [BUSYBOX, NO_SHELL, USER_ALICE] {
            if !docker(&["image", "inspect", image]) {
                return Err(format!(
                    "the engine does not answer or lacks {image} (run scripts/test-images)"
                ));
            }
        }
        Ok(())
    });
    match ready {
        Ok(()) => true,
        Err(why) => {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !in_ci,
                "Docker tests cannot run: {why}; CI=true forbids skipping them. \
                 scripts/test starts dockerd and builds what they need"
            );
            eprintln!("SKIPPED: Docker test; {why}");
            false
        }
    }
}

/// The static agent binary.
pub fn agent_binary() -> std::path::PathBuf {
    std::env::var_os(AGENT_VARIABLE)
        .expect("PADDOCK_STATIC_AGENT is set")
        .into()
}

/// Runs `docker ARGS…` quietly; true when it succeeded.
pub fn docker(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `docker ARGS…` and returns its trimmed standard output.
pub fn docker_output(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The containers whose name contains `sandbox_id`, running or not.
pub fn containers_of(sandbox_id: &str) -> Vec<String> {
    docker_output(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=io.paddock.sandbox-id={sandbox_id}"),
        "--format",
        "{{.ID}}",
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Removes every container of the store `scope`, running or not.
pub fn remove_containers(scope: &str) {
    let Ok(output) = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=io.paddock.scope={scope}"),
        ])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.iter().map(String::as_str));
        docker(&args);
    }
}

/// Removes the containers of a store when dropped, for tests that run
/// several servers on one data directory.
pub struct RemoveContainers(pub String);

impl Drop for RemoveContainers {
    fn drop(&mut self) {
        remove_containers(&self.0);
    }
}

/// A registry (Debian's `docker-registry`) on a free loopback port, which the
/// engine trusts without TLS; stopped and emptied when dropped.
pub struct LoopbackRegistry {
    /// HOST:PORT.
    pub address: String,
    child: std::process::Child,
    _storage: tempfile::TempDir,
}

impl LoopbackRegistry {
    /// Starts the registry and waits until it answers.
    pub fn start() -> Self {
        let storage = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry runs (apt-get install docker-registry; scripts/test does)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            address,
            child,
            _storage: storage,
        }
    }

    /// Pushes the local `image` as `name` (REPO:TAG) and removes the local
    /// copy, so that using it means pulling it; returns the full reference.
    pub fn push(&self, image: &str, name: &str) -> String {
        let reference = format!("{}/{name}", self.address);
        docker_output(&["tag", image, &reference]);
        docker_output(&["push", &reference]);
        docker_output(&["rmi", &reference]);
        reference
    }
}

impl Drop for LoopbackRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
