//! Faults survived: the server's Postgres stopped for ten seconds under a
//! steady stream of calls, and started again; an agent that stops
//! answering. The cluster is the test's
//! own (Debian's `initdb` and `pg_ctl`, as scripts/test uses), so that
//! stopping it disturbs no other test.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::common::{self, TestServer};

/// A throw-away Postgres cluster on a free port of loopback.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    /// Makes and starts a cluster; `None` (the test skips) when Postgres's
    /// programs are not installed, except under CI=true, where that fails.
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                let mut versions: Vec<PathBuf> = versions.flatten().map(|v| v.path()).collect();
                versions.sort();
                versions.pop()
            })
            .map(|version| version.join("bin"))
            .filter(|bin| bin.join("pg_ctl").exists());
        let Some(bin) = bin else {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !in_ci,
                "Postgres's programs are not installed; CI=true forbids skipping"
            );
            eprintln!("SKIPPED: no Postgres programs under /usr/lib/postgresql");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            // initdb refuses to run as root; the cluster belongs to postgres.
            let status = Command::new("chown")
                .args(["postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the cluster's directory");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self { dir, bin, port };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "paddock",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        cluster.start_again();
        Some(cluster)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://paddock@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command.args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Stops the cluster the way an operator's restart does: connections
    /// are told the server is shutting down, then it is gone.
    fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        if is_root() {
            let _ = Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["-D", &self.data(), "-m", "immediate", "stop"])
                .output();
        }
    }
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// What one call saw: when it began (since the start), how long it took,
/// and its status code (`Ok` when it succeeded).
type Seen = (Duration, Duration, tonic::Code, String);

// Several threads: stopping and starting the cluster blocks one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_fast_while_postgres_is_down_and_recover_by_themselves() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = TestServer::start_with(|args| args.database_url = Some(cluster.url())).await;
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await;
    let began = Instant::now();

    let calls: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let statuses: Arc<Mutex<Vec<(Duration, i32)>>> = Arc::default();
    let calling = {
        let mut client = server.sandboxes().await;
        let calls = calls.clone();
        let id = sandbox.id.clone();
        tokio::spawn(async move {
            loop {
                let at = began.elapsed();
                let answer = client
                    .get_sandbox(pb::GetSandboxRequest {
                        sandbox_id: id.clone(),
                    })
                    .await;
                let (code, message) = match answer {
                    Ok(_) => (tonic::Code::Ok, String::new()),
                    Err(status) => (status.code(), status.message().to_owned()),
                };
                calls
                    .lock()
                    .unwrap()
                    .push((at, began.elapsed() - at, code, message));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let checking = {
        let mut health = server.health().await;
        let statuses = statuses.clone();
        tokio::spawn(async move {
            loop {
                let status = health
                    .check(HealthCheckRequest {
                        service: "paddock.v1.SandboxService".into(),
                    })
                    .await
                    .map_or(-1, |answer| answer.into_inner().status);
                statuses.lock().unwrap().push((began.elapsed(), status));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped_at = began.elapsed();
    tokio::task::block_in_place(|| cluster.stop());
    tokio::time::sleep(Duration::from_secs(10)).await;
    tokio::task::block_in_place(|| cluster.start_again());
    let restarted_at = began.elapsed();
    common::eventually(Duration::from_secs(15), "calls to succeed again", || {
        let last_ok = calls
            .lock()
            .unwrap()
            .last()
            .is_some_and(|(at, _, code, _)| *at > restarted_at && *code == tonic::Code::Ok);
        async move { last_ok.then_some(()) }
    })
    .await;
    common::eventually(Duration::from_secs(5), "health SERVING again", || {
        let serving = statuses.lock().unwrap().last().is_some_and(|(at, status)| {
            *at > restarted_at && *status == ServingStatus::Serving as i32
        });
        async move { serving.then_some(()) }
    })
    .await;
    calling.abort();
    checking.abort();

    let calls = calls.lock().unwrap().clone();
    let failed: Vec<&Seen> = calls
        .iter()
        .filter(|(_, _, code, _)| *code != tonic::Code::Ok)
        .collect();
    assert!(
        failed.len() >= 10,
        "the outage failed only {} calls",
        failed.len()
    );
    for (at, took, code, message) in &failed {
        assert_eq!(*code, tonic::Code::Unavailable, "at {at:?}: {message}");
        assert!(message.contains("database"), "at {at:?}: {message}");
        assert!(
            *took < Duration::from_secs(4),
            "a call at {at:?} took {took:?} to fail: {message}"
        );
        assert!(*at + *took >= stopped_at, "failed before the stop");
    }
    // Once the health check has seen the outage, calls fail without
    // waiting on the database.
    let statuses = statuses.lock().unwrap().clone();
    let not_serving_at = statuses
        .iter()
        .find(|(at, status)| *at > stopped_at && *status == ServingStatus::NotServing as i32)
        .map(|(at, _)| *at)
        .expect("health went NOT_SERVING during the outage");
    assert!(
        not_serving_at < stopped_at + Duration::from_secs(5),
        "NOT_SERVING only {:?} after the stop",
        not_serving_at - stopped_at
    );
    let fast = failed
        .iter()
        .filter(|(at, _, _, _)| *at > not_serving_at && *at < restarted_at)
        .all(|(_, took, _, _)| *took < Duration::from_millis(500));
    assert!(
        fast,
        "calls waited on the database after the outage was known"
    );
    drop(server);
}

/// The `paddock_commands_running` the server's metrics say now.
async fn commands_running(addr: std::net::SocketAddr) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .lines()
        .find_map(|line| line.strip_prefix("paddock_commands_running "))
        .and_then(|value| value.trim().parse().ok())
        .expect("paddock_commands_running in the exposition")
}

/// An agent that stops answering (its process frozen with SIGSTOP) holds
/// no call past the caller's deadline: the server lets go of it (its
/// command slot is free again), and answers others.
#[tokio::test]
async fn a_frozen_agent_holds_no_call_past_its_deadline() {
    let server = TestServer::start_with(|args| {
        args.metrics_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let metrics = server.metrics_addr.unwrap();
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await;
    let agent = common::agent_pid(&server.sandbox_dir(&sandbox.id));
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &agent.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {name} {agent}");
    };
    signal("-STOP");
    let mut request = tonic::Request::new(pb::RunCommandRequest {
        sandbox_id: sandbox.id.clone(),
        spec: Some(pb::CommandSpec {
            command: vec!["true".into()],
            ..Default::default()
        }),
        ..Default::default()
    });
    request.set_timeout(Duration::from_secs(1));
    let began = Instant::now();
    let answer = ExecServiceClient::new(server.channel().await)
        .run_command(request)
        .await;
    let took = began.elapsed();
    // Still frozen: the server must have let go of the call by itself.
    common::eventually(Duration::from_secs(1), "the call's slot freed", || async {
        (commands_running(metrics).await == 0).then_some(())
    })
    .await;
    signal("-CONT");
    let status = answer.expect_err("a frozen agent cannot answer");
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{status:?}"
    );
    assert!(took < Duration::from_secs(3), "the call was held {took:?}");
    // The server itself answered throughout, and the agent does again.
    server.get(&sandbox.id).await;
    let ran = server.run(&sandbox.id, &["true"]).await;
    assert_eq!(ran.exit_code, Some(0));
}
