//! Running the agent as a local process beside its sandbox directory, and
//! reaching it over a Unix socket there.
//!
//! The agent runs in a session of its own, so it outlives the server (a
//! restarted server finds it again) and ignores the server's terminal.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tracing::{info, warn};

use super::contract::AgentLaunch;
use crate::error::{Error, Result};

/// How long a new agent may take to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping agent may take to end its commands and exit.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How many times an agent start is tried when bubblewrap fails on
/// [`VANISHED_SUBMOUNT`].
const START_ATTEMPTS: usize = 3;
/// Bubblewrap's complaint when a mount under a host directory it binds
/// went away while it made that directory read-only. Its namespace follows
/// the host's unmounts, and a container engine on the host unmounts its
/// containers' filesystems (under /var/lib/docker) at any time: a race,
/// worth another try, not a broken sandbox.
const VANISHED_SUBMOUNT: &str = "Unable to apply mount flags";

/// Where a sandbox's agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    /// In bubblewrap: its own mount, PID, IPC and UTS namespaces (and network
    /// namespace when asked), the agent as PID 1, the host's filesystem
    /// read-only but for the sandbox's directory, its workdir and a private
    /// /tmp.
    Bubblewrap(PathBuf),
    /// As a plain process of the server's user.
    None,
}

impl Confinement {
    /// Bubblewrap when `bwrap` is on the PATH and works here (it needs user
    /// namespaces or privileges), otherwise none.
    pub async fn detect() -> Self {
        let Some(bwrap) = find_on_path("bwrap") else {
            return Self::None;
        };
        let mut outcome = probe(&bwrap).await;
        for _ in 1..START_ATTEMPTS {
            if outcome != Probe::Raced {
                break;
            }
            outcome = probe(&bwrap).await;
        }
        if outcome == Probe::Works {
            Self::Bubblewrap(bwrap)
        } else {
            warn!(bwrap = %bwrap.display(), "bwrap is installed but cannot make namespaces here; sandboxes run unconfined");
            Self::None
        }
    }
}

/// What one trial run of bubblewrap told.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    Works,
    /// It failed on [`VANISHED_SUBMOUNT`]: try again.
    Raced,
    Fails,
}

/// Runs `true` in bubblewrap with the namespaces sandboxes use.
async fn probe(bwrap: &Path) -> Probe {
    let output = tokio::process::Command::new(bwrap)
        .args([
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
            "--cap-drop",
            "ALL",
        ])
        .args([
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--as-pid-1",
        ])
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) if output.status.success() => Probe::Works,
        Ok(output) if String::from_utf8_lossy(&output.stderr).contains(VANISHED_SUBMOUNT) => {
            Probe::Raced
        }
        _ => Probe::Fails,
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// What one agent runs for.
pub struct AgentSandbox<'a> {
    /// The sandbox's id.
    pub sandbox_id: &'a str,
    /// Its working directory, a sandbox path.
    pub workdir: &'a str,
    /// Whether it is cut off the network.
    pub no_network: bool,
    /// The named volumes it mounts.
    pub volumes: &'a [VolumeBind],
}

/// A named volume's directory mounted into a confined sandbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeBind {
    /// The volume's directory on the host.
    pub source: PathBuf,
    /// Where the sandbox sees it, an absolute sandbox path.
    pub target: String,
    /// Whether it is mounted read-only.
    pub read_only: bool,
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
        confinement: &Confinement,
        sandbox: AgentSandbox<'_>,
    ) -> Result<()> {
        let sandbox_id = sandbox.sandbox_id;
        if self.live_pid(sandbox_id).is_some()
            && tokio::net::UnixStream::connect(self.socket()).await.is_ok()
        {
            return Ok(());
        }
        for attempt in 1..=START_ATTEMPTS {
            self.stop(sandbox_id).await?;
            self.spawn(launch, confinement, &sandbox)?;
            match self.wait_listening(sandbox_id).await {
                Ok(()) => break,
                Err(last_line)
                    if attempt < START_ATTEMPTS && last_line.contains(VANISHED_SUBMOUNT) =>
                {
                    warn!(sandbox_id, attempt, %last_line, "a host mount went away while bubblewrap copied it; starting the agent again");
                }
                Err(last_line) => {
                    return Err(Error::unavailable(format!(
                        "the sandbox's agent did not start: {last_line}"
                    )));
                }
            }
        }
        info!(sandbox_id, "agent started");
        Ok(())
    }

    /// Starts the agent process and records its pid.
    fn spawn(
        &self,
        launch: &AgentLaunch,
        confinement: &Confinement,
        sandbox: &AgentSandbox<'_>,
    ) -> Result<()> {
        let sandbox_id = sandbox.sandbox_id;
        let log = std::fs::File::create(self.dir.join("agent.log"))
            .map_err(|e| Error::internal("starting a sandbox agent", e))?;
        let rootfs = self.dir.join("rootfs");
        let (mut command, agent_root) = match confinement {
            Confinement::None => (tokio::process::Command::new(&launch.binary), rootfs.clone()),
            Confinement::Bubblewrap(bwrap) => {
                let mut command = tokio::process::Command::new(bwrap);
                command
                    .args(["--unshare-pid", "--unshare-ipc", "--unshare-uts"])
                    .args(["--hostname", "sandbox", "--as-pid-1", "--new-session"])
                    // Run as root, bubblewrap would leave the agent and its
                    // commands every capability: mknod of the host's disk,
                    // mount, raw sockets. None is needed.
                    .args(["--cap-drop", "ALL"])
                    .args(host_read_only_binds(sandbox.workdir))
                    .args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"])
                    .arg("--bind")
                    .arg(&self.dir)
                    .arg(&self.dir);
                if sandbox.no_network {
                    command.arg("--unshare-net");
                }
                if sandbox.workdir != "/" {
                    command
                        .arg("--bind")
                        .arg(rootfs.join(sandbox.workdir.trim_start_matches('/')))
                        .arg(sandbox.workdir);
                }
                // After the workdir, so that a volume may be mounted on it;
                // twice, so that file operations, which go through the
                // sandbox's directory, see the volume as commands do.
                for volume in sandbox.volumes {
                    let bind = if volume.read_only {
                        "--ro-bind"
                    } else {
                        "--bind"
                    };
                    command
                        .arg(bind)
                        .arg(&volume.source)
                        .arg(&volume.target)
                        .arg(bind)
                        .arg(&volume.source)
                        .arg(rootfs.join(volume.target.trim_start_matches('/')));
                }
                // The agent's own binary may sit under the directory left
                // out for the workdir.
                command
                    .arg("--ro-bind")
                    .arg(&launch.binary)
                    .arg(&launch.binary)
                    .arg("--")
                    .arg(&launch.binary);
                (command, PathBuf::from("/"))
            }
        };
        command
            .arg("agent")
            .arg("--socket")
            .arg(self.socket())
            .args(["--sandbox-id", sandbox_id])
            .arg("--root")
            .arg(agent_root)
            .arg("--files-root")
            .arg(&rootfs)
            .arg("--state-dir")
            .arg(self.dir.join("agent"))
            .args(["--workdir", sandbox.workdir])
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
            .map_err(|e| Error::internal("recording a sandbox agent's pid", e))
    }

    /// Waits until the agent listens; when it exits or times out first,
    /// the last line it logged.
    async fn wait_listening(&self, sandbox_id: &str) -> std::result::Result<(), String> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        while tokio::net::UnixStream::connect(self.socket())
            .await
            .is_err()
        {
            if tokio::time::Instant::now() >= deadline || self.live_pid(sandbox_id).is_none() {
                let log = std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default();
                return Err(log.lines().last().unwrap_or("no output").to_owned());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Stops the agent (SIGTERM, then SIGKILL after a grace) if it runs.
    pub async fn stop(&self, sandbox_id: &str) -> Result<()> {
        let Some(pid) = self.live_pid(sandbox_id) else {
            let _ = std::fs::remove_file(self.socket());
            return Ok(());
        };
        // Under bubblewrap the agent is the child of the recorded process,
        // which does not pass signals on.
        let agent = children(pid).into_iter().next().unwrap_or(pid);
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(agent, libc::SIGTERM) };
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while self.live_pid(sandbox_id).is_some() && !is_zombie(pid) {
            if tokio::time::Instant::now() >= deadline {
                warn!(sandbox_id, pid, "agent ignored SIGTERM; killing it");
                // SAFETY: as above.
                unsafe {
                    libc::kill(agent, libc::SIGKILL);
                    libc::kill(pid, libc::SIGKILL);
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = std::fs::remove_file(self.socket());
        let _ = std::fs::remove_file(self.pid_file());
        Ok(())
    }
}

/// Read-only binds of the host's top-level directories, so the sandbox's
/// programs and libraries are the host's. The new root stays writable for
/// mount points; the top-level directory holding the sandbox's workdir is
/// left out, so the workdir can be mounted there.
fn host_read_only_binds(workdir: &str) -> Vec<String> {
    let workdir_top = workdir
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    let Ok(entries) = std::fs::read_dir("/") else {
        return vec!["--ro-bind".into(), "/".into(), "/".into()];
    };
    let mut binds = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(name.as_str(), "proc" | "dev" | "tmp") || name == workdir_top {
            continue;
        }
        let path = format!("/{name}");
        binds.extend(["--ro-bind-try".to_owned(), path.clone(), path]);
    }
    binds
}

/// The children of process `pid`.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
