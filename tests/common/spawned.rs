//! The real `paddock serve` binary as a child process, for tests that kill
//! it or measure it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use paddock::pb::sandbox_service_client::SandboxServiceClient;
use paddock::server::BoundAddr;

use super::connect;

/// A `paddock serve` child process, killed when dropped so that a failing
/// test never leaves a server behind.
pub struct ServerProcess {
    child: Child,
    port: u16,
    data_dir: std::path::PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts the real binary on an ephemeral port and waits until it
    /// serves; the port is read from its `serving` log line, so parallel
    /// tests never race for a port.
    pub fn spawn(data_dir: &Path) -> Self {
        Self::spawn_with(data_dir, &[])
    }

    /// Like [`ServerProcess::spawn`], with more environment variables (they
    /// win over the defaults, which choose the process provider).
    pub fn spawn_with(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_paddock"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("PADDOCK_LOG", "info")
            .env("PADDOCK_LOG_FORMAT", "json")
            .env("PADDOCK_AGENT_BINARY", env!("CARGO_BIN_EXE_paddock"))
            .env("PADDOCK_PROVIDER", "process")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paddock serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut before_serving = Vec::new();
        let port = loop {
            let line = lines
                .next()
                .expect("the server logs that it serves before exiting")
                .unwrap();
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
            if entry["message"] == "serving" {
                let addr: std::net::SocketAddr = entry["addr"].as_str().unwrap().parse().unwrap();
                break addr.port();
            }
            before_serving.push(line);
        };
        // Keep draining the log so the server never blocks on a full pipe.
        let log = Arc::new(Mutex::new(before_serving));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            port,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    /// The JSON log lines the server wrote (but the one saying it serves).
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|line| serde_json::from_str(line).expect("a JSON log line"))
            .collect()
    }

    /// The server's address as the CLI takes it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the server to exit.
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait()
    }

    /// A channel to the server.
    pub async fn channel(&self) -> tonic::transport::Channel {
        connect(&BoundAddr::Tcp(([127, 0, 0, 1], self.port).into())).await
    }

    /// A SandboxService client.
    pub async fn client(&self) -> SandboxServiceClient<tonic::transport::Channel> {
        let addr = BoundAddr::Tcp(([127, 0, 0, 1], self.port).into());
        SandboxServiceClient::new(connect(&addr).await)
    }

    /// SIGKILLs the server and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the server");
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        super::kill_agents(&self.data_dir);
    }
}

/// A gate that holds every sandbox's provisioning between its provider's
/// create and start (the server's `test-hooks` gates), so that a test can
/// kill a server with creates in flight at a point it chose.
pub struct Gate {
    dir: tempfile::TempDir,
}

impl Gate {
    /// A closed gate. Fails loudly when the server was built without the
    /// `test-hooks` feature (scripts/test builds with it).
    pub fn new() -> Self {
        if !cfg!(feature = "test-hooks") {
            panic!(
                "this test needs the server's test hooks: run it with --features test-hooks \
                 (scripts/test does)"
            );
        }
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The server environment that sets the gate up.
    pub fn env(&self) -> (&'static str, &str) {
        ("PADDOCK_TEST_GATE", self.dir.path().to_str().unwrap())
    }

    /// How many sandboxes wait at the gate (or passed it).
    pub fn arrivals(&self) -> usize {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("created."))
            })
            .count()
    }
}

/// The resident memory of process `pid` in bytes (0 when it is gone).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}
