//! Running the agent as a local process beside its sandbox directory, and
//! reaching it over a Unix socket there.
//!
//! The agent runs in a session of its own, so it outlives the server (a
//! restarted server finds it again) and ignores the server's terminal.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::error::{Error, Result};

/// How long a new agent may take to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping agent may take to end its commands and exit.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How to run agents.
#[derive(Debug, Clone)]
pub struct AgentLaunch {
    /// The `paddock` binary that runs `paddock agent`.
    pub binary: PathBuf,
    /// The most commands running at once in one sandbox.
    pub max_commands: usize,
    /// The bytes of output kept per command.
    pub output_budget: u64,
}

/// The files of one sandbox's agent.
pub struct AgentFiles {
    dir: PathBuf,
}

impl AgentFiles {
    /// The agent files of the sandbox directory `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The agent's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("agent.pid")
    }

    /// The pid of this sandbox's agent when it is alive.
    pub fn live_pid(&self, sandbox_id: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // The pid may have been reused since: it must still be our agent.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("\0agent\0") && cmdline.contains(sandbox_id)).then_some(pid)
    }

    /// Starts the agent unless it is running, and waits until it listens.
    pub async fn ensure_running(
        &self,
        launch: &AgentLaunch,
        sandbox_id: &str,
        workdir: &str,
    ) -> Result<()> {
        if self.live_pid(sandbox_id).is_some()
            && tokio::net::UnixStream::connect(self.socket()).await.is_ok()
        {
            return Ok(());
        }
        self.stop(sandbox_id).await?;
        let log = std::fs::File::create(self.dir.join("agent.log"))
            .map_err(|e| Error::internal("starting a sandbox agent", e))?;
        let mut command = tokio::process::Command::new(&launch.binary);
        command
            .arg("agent")
            .arg("--socket")
            .arg(self.socket())
            .args(["--sandbox-id", sandbox_id])
            .arg("--root")
            .arg(self.dir.join("rootfs"))
            .arg("--state-dir")
            .arg(self.dir.join("agent"))
            .args(["--workdir", workdir])
            .arg("--env-file")
            .arg(self.dir.join("env.json"))
            .args(["--max-commands", &launch.max_commands.to_string()])
            .args(["--output-budget", &launch.output_budget.to_string()])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| {
            Error::unavailable(format!(
                "cannot run the agent {}: {e}",
                launch.binary.display()
            ))
        })?;
        let pid = child.id().unwrap_or_default();
        // Dropping the handle leaves the agent running; tokio reaps it if it
        // ends while this server lives.
        drop(child);
        std::fs::write(self.pid_file(), pid.to_string())
            .map_err(|e| Error::internal("recording a sandbox agent's pid", e))?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while tokio::net::UnixStream::connect(self.socket())
            .await
            .is_err()
        {
            if tokio::time::Instant::now() >= deadline || self.live_pid(sandbox_id).is_none() {
                let log = std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default();
                return Err(Error::unavailable(format!(
                    "the sandbox's agent did not start: {}",
                    log.lines().last().unwrap_or("no output")
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        info!(sandbox_id, pid, "agent started");
        Ok(())
    }

    /// Stops the agent (SIGTERM, then SIGKILL after a grace) if it runs.
    pub async fn stop(&self, sandbox_id: &str) -> Result<()> {
        let Some(pid) = self.live_pid(sandbox_id) else {
            let _ = std::fs::remove_file(self.socket());
            return Ok(());
        };
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while self.live_pid(sandbox_id).is_some() && !is_zombie(pid) {
            if tokio::time::Instant::now() >= deadline {
                warn!(sandbox_id, pid, "agent ignored SIGTERM; killing it");
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = std::fs::remove_file(self.socket());
        let _ = std::fs::remove_file(self.pid_file());
        Ok(())
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// A channel to the agent listening on `socket`. It connects lazily and
/// reconnects after failures.
pub fn channel(socket: PathBuf) -> Channel {
    Endpoint::from_static("http://agent.invalid")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
}
