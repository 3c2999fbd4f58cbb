//! The `paddock serve` under test: a separate process on a fresh data
//! directory, so that its resident memory is its own and the benchmark's
//! client work is not counted in it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use paddock::pb;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use tonic::transport::{Channel, Endpoint};

/// The variable naming the static release build (scripts/build-static-agent).
pub const STATIC_AGENT: &str = "PADDOCK_STATIC_AGENT";

/// The binary served: the static release build when there is one (Docker
/// needs it as the agent, and it is what users run), else the one cargo
/// built next to this benchmark.
pub fn binary() -> PathBuf {
    std::env::var_os(STATIC_AGENT)
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_paddock").into())
}

pub struct ServerProcess {
    child: Child,
    pub addr: std::net::SocketAddr,
    /// Kept for the life of the server; removed when dropped.
    pub data: tempfile::TempDir,
    /// The API key made with [`ServerProcess::make_key`], used by `stop`.
    key: Option<String>,
}

impl ServerProcess {
    /// Starts `paddock serve` with `provider` (and, for Docker, the agent
    /// transport) and waits until it serves.
    pub fn start(provider: &str, docker_transport: &str) -> Self {
        Self::start_with(provider, docker_transport, &[])
    }

    /// Like [`ServerProcess::start`], with more flags for `paddock serve`.
    pub fn start_with(provider: &str, docker_transport: &str, flags: &[&str]) -> Self {
        Self::start_with_env(provider, docker_transport, flags, &[])
    }

    /// Like [`ServerProcess::start_with`], with environment variables too.
    pub fn start_with_env(
        provider: &str,
        docker_transport: &str,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let data = tempfile::tempdir().expect("data directory");
        let binary = binary();
        let mut child = Command::new(&binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--provider", provider])
            .arg("--data-dir")
            .arg(data.path())
            .arg("--agent-binary")
            .arg(&binary)
            .arg("--docker-agent-binary")
            .arg(&binary)
            .args(["--docker-agent-transport", docker_transport])
            .args(flags)
            .env("PADDOCK_LOG", "warn,paddock::server=info")
            .env("PADDOCK_LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the server says it serves before it exits")
                .expect("server log");
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                eprintln!("server: {line}");
                continue;
            };
            if entry["message"] == "serving" {
                break entry["addr"].as_str().expect("addr").parse().expect("addr");
            }
            if entry["level"] != "INFO" {
                eprintln!("server: {line}");
            }
        };
        // Warnings and errors reach the terminal; the server never blocks
        // on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let level = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|entry| entry["level"].as_str().map(str::to_owned));
                if level.as_deref() != Some("INFO") {
                    eprintln!("server: {line}");
                }
            }
        });
        Self {
            child,
            addr,
            data,
            key: None,
        }
    }

    /// A new connection to the server (each is one HTTP/2 connection).
    pub async fn connect(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to the server")
    }

    /// Makes an API key for `tenant` with `paddock keys` in the server's
    /// database and returns it.
    pub fn make_key(&mut self, tenant: &str) -> String {
        let output = Command::new(binary())
            .args(["keys", "create", "--tenant", tenant, "--data-dir"])
            .arg(self.data.path())
            .output()
            .expect("run paddock keys create");
        assert!(output.status.success(), "paddock keys create: {output:?}");
        let key = String::from_utf8(output.stdout)
            .expect("a key")
            .trim()
            .to_owned();
        self.key = Some(key.clone());
        key
    }

    /// The server's resident memory (VmRSS) in bytes.
    pub fn rss(&self) -> u64 {
        rss_of(self.child.id())
    }

    /// Deletes every sandbox, then stops the server the way an operator
    /// would (SIGTERM) and waits for it.
    pub async fn stop(mut self) {
        let header = self.key.as_ref().map(|key| {
            format!("Bearer {key}")
                .parse::<tonic::metadata::MetadataValue<_>>()
                .expect("a header value")
        });
        let mut sandboxes = SandboxServiceClient::with_interceptor(
            self.connect().await,
            move |mut request: tonic::Request<()>| {
                if let Some(header) = &header {
                    request
                        .metadata_mut()
                        .insert("authorization", header.clone());
                }
                Ok(request)
            },
        );
        let listed = sandboxes
            .list_sandboxes(pb::ListSandboxesRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .expect("list sandboxes")
            .into_inner();
        for sandbox in listed.sandboxes {
            let _ = sandboxes
                .delete_sandbox(pb::DeleteSandboxRequest {
                    sandbox_id: sandbox.id,
                })
                .await;
        }
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of a process, in bytes.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS");
    kib << 10
}
