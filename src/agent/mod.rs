//! The in-sandbox agent: the sandbox's init (or subreaper), which runs
//! commands with fork/exec, owns their process groups and terminals, keeps
//! their output logs on the sandbox's disk, and serves `paddock.v1.ExecService`
//! on a Unix socket that its provider hands to the control plane.

pub mod bridge;
mod command;
mod files;
mod output;
mod peers;
mod reaper;
mod service;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::Status;
use tracing::{info, warn};

use crate::pb;
use command::{Command, Launch};
use reaper::Reaper;

/// The PATH of commands whose environment sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Settings of `paddock agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The Unix socket to serve on.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// The sandbox this agent serves.
    #[arg(long, value_name = "ID")]
    pub sandbox_id: String,
    /// Where the sandbox's "/" is in the agent's view of the filesystem.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Confine file operations beneath this directory (the sandbox's "/"
    /// for FileService). Unset: the agent's own "/" is the sandbox's (a
    /// container), and paths are used as they are.
    #[arg(long, value_name = "DIR")]
    pub files_root: Option<PathBuf>,
    /// Where command records and output logs are kept.
    #[arg(long, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// The sandbox's working directory (a sandbox path).
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub workdir: String,
    /// A JSON object of environment variables for every command.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Start every command's environment from the agent's own (a
    /// container's image and configured environment) instead of a minimal
    /// default one.
    #[arg(long)]
    pub inherit_env: bool,
    /// The most commands running at once.
    #[arg(long, default_value_t = 1024)]
    pub max_commands: usize,
    /// The bytes of output kept per command.
    #[arg(long, default_value_t = 64 << 20)]
    pub output_budget: u64,
}

/// The agent's state: its commands.
pub struct Agent {
    args: AgentArgs,
    env: BTreeMap<String, String>,
    reaper: Reaper,
    commands: Mutex<BTreeMap<String, Arc<Command>>>,
    /// The processes connected to the agent, spared by KillProcesses.
    peers: peers::Peers,
}

impl Agent {
    fn commands_dir(&self) -> PathBuf {
        self.args.state_dir.join("commands")
    }

    /// Every command, oldest first.
    pub fn commands(&self) -> Vec<Arc<Command>> {
        self.commands
            .lock()
            .expect("commands")
            .values()
            .cloned()
            .collect()
    }

    /// The command `id`, or NOT_FOUND.
    pub fn command(&self, id: &str) -> Result<Arc<Command>, Status> {
        self.commands
            .lock()
            .expect("commands")
            .get(id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no command has id {id:?} in this sandbox")))
    }

    /// Starts a command. RESOURCE_EXHAUSTED at the running-command limit;
    /// FAILED_PRECONDITION when the program cannot be started.
    pub fn launch(&self, spec: pb::CommandSpec) -> Result<Arc<Command>, Status> {
        let running = self.commands().iter().filter(|c| c.is_running()).count();
        if running >= self.args.max_commands {
            return Err(Status::resource_exhausted(format!(
                "{running} commands are running in this sandbox, its limit; wait for one to end"
            )));
        }
        let argv = if spec.shell.is_empty() {
            spec.command.clone()
        } else {
            vec!["/bin/sh".into(), "-c".into(), spec.shell.clone()]
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err(Status::invalid_argument("command: is required"));
        }
        let workdir = if spec.workdir.is_empty() {
            self.args.workdir.clone()
        } else {
            spec.workdir.clone()
        };
        let mut env = BTreeMap::from([
            ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
            ("HOME".to_owned(), workdir.clone()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ]);
        if self.args.inherit_env {
            env.extend(std::env::vars());
        }
        if spec.tty {
            env.insert("TERM".into(), "xterm-256color".into());
        }
        env.extend(self.env.clone());
        env.extend(spec.env.clone());
        let tty = spec.tty.then(|| {
            let rows = if spec.rows == 0 { 24 } else { spec.rows as u16 };
            let cols = if spec.cols == 0 { 80 } else { spec.cols as u16 };
            (rows, cols)
        });
        let timeout = spec
            .timeout
            .as_ref()
            .map(|d| std::time::Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32));
        let id = format!("cmd_{}", uuid::Uuid::now_v7().simple());
        let dir = self.commands_dir().join(&id);
        let record = pb::Command {
            id: id.clone(),
            sandbox_id: self.args.sandbox_id.clone(),
            spec: Some(spec),
            ..Default::default()
        };
        let launch = Launch {
            argv: argv.clone(),
            env,
            cwd: sandbox_path(&self.args.root, &workdir),
            tty,
            timeout,
        };
        let command = Command::spawn(
            &self.reaper,
            id.clone(),
            dir,
            self.args.output_budget,
            record,
            launch,
        )
        .map_err(|error| {
            Status::failed_precondition(format!("cannot start {:?} in {workdir}: {error}", argv[0]))
        })?;
        let mut commands = self.commands.lock().expect("commands");
        commands.insert(id, command.clone());
        forget_oldest_ended(&mut commands);
        Ok(command)
    }

    /// Loads the commands an earlier agent recorded in the state directory.
    fn load_commands(&self) {
        let Ok(entries) = std::fs::read_dir(self.commands_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            match Command::reopen(&entry.path()) {
                Ok(command) => {
                    let mut commands = self.commands.lock().expect("commands");
                    commands.insert(command.id.clone(), command);
                    forget_oldest_ended(&mut commands);
                }
                Err(error) => {
                    warn!(path = %entry.path().display(), %error, "cannot load a command record")
                }
            }
        }
    }
}

impl Agent {
    /// Sends `signal` to every process of the sandbox but the agent and the
    /// processes connected to it; returns how many it reached. Only for an
    /// agent that is its sandbox's init (it sees exactly the sandbox's
    /// processes). Processes forked while it works are caught by going over
    /// the list again until a pass finds none new.
    pub fn signal_every_process(&self, signal: i32) -> usize {
        let mut signalled = std::collections::HashSet::new();
        for _ in 0..5 {
            let mut new = 0;
            let Ok(entries) = std::fs::read_dir("/proc") else {
                break;
            };
            for pid in entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            {
                if pid == 1 || self.peers.contains(pid) || signalled.contains(&pid) {
                    continue;
                }
                // SAFETY: kill takes plain integers.
                if unsafe { libc::kill(pid, signal) } == 0 {
                    signalled.insert(pid);
                    new += 1;
                }
            }
            if new == 0 {
                break;
            }
        }
        signalled.len()
    }
}

/// How many ended commands the agent keeps, with their output logs; older
/// ones are forgotten.
pub const ENDED_COMMANDS_KEPT: usize = 1000;

/// Forgets the oldest ended commands past [`ENDED_COMMANDS_KEPT`]. Ids sort by
/// time, so the map's order is the commands' age.
fn forget_oldest_ended(commands: &mut BTreeMap<String, Arc<Command>>) {
    let ended: Vec<String> = commands
        .values()
        .filter(|c| !c.is_running())
        .map(|c| c.id.clone())
        .collect();
    let excess = ended.len().saturating_sub(ENDED_COMMANDS_KEPT);
    for id in ended.into_iter().take(excess) {
        if let Some(command) = commands.remove(&id) {
            command.log.remove();
        }
    }
}

/// `path` (absolute, in the sandbox) in the agent's view of the filesystem.
fn sandbox_path(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Runs the agent until SIGTERM or SIGINT; then ends every command's process
/// group and exits.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(args.state_dir.join("commands"))
        .with_context(|| format!("cannot create {}", args.state_dir.display()))?;
    let env = match &args.env_file {
        Some(path) => serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not a JSON object of strings", path.display()))?,
        None => BTreeMap::new(),
    };
    let reaper = Reaper::start().context("cannot watch SIGCHLD")?;
    let agent = Arc::new(Agent {
        args: args.clone(),
        env,
        reaper,
        commands: Mutex::new(BTreeMap::new()),
        peers: peers::Peers::default(),
    });
    agent.load_commands();

    let _ = std::fs::remove_file(&args.socket);
    let listener = UnixListener::bind(&args.socket)
        .with_context(|| format!("cannot listen on {}", args.socket.display()))?;
    info!(socket = %args.socket.display(), sandbox_id = %args.sandbox_id, "agent serving");

    let stopping = {
        let agent = agent.clone();
        async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            info!("agent stopping: ending every command");
            for command in agent.commands() {
                let _ = command.signal(libc::SIGKILL);
            }
        }
    };
    let service = service::AgentExec::new(agent.clone());
    let files_root = match &args.files_root {
        Some(dir) => files::root::Root::beneath(dir)
            .with_context(|| format!("cannot open the files root {}", dir.display()))?,
        None => files::root::Root::Whole,
    };
    let files = files::AgentFiles::new(files_root, args.workdir.clone());
    tonic::transport::Server::builder()
        .initial_stream_window_size(crate::wire::RECEIVE_STREAM_WINDOW)
        .initial_connection_window_size(crate::wire::RECEIVE_CONNECTION_WINDOW)
        .max_frame_size(Some(crate::wire::RECEIVE_MAX_FRAME))
        .add_service(
            pb::exec_service_server::ExecServiceServer::new(service)
                .max_decoding_message_size(4 << 20),
        )
        .add_service(
            pb::file_service_server::FileServiceServer::new(files)
                .max_decoding_message_size(4 << 20),
        )
        .serve_with_incoming_shutdown(
            {
                let peers = agent.peers.clone();
                UnixListenerStream::new(listener)
                    .map(move |accepted| accepted.map(|s| peers.track(s)))
            },
            stopping,
        )
        .await
        .context("the agent's gRPC server failed")?;
    // Let the killed commands record how they ended.
    for command in agent.commands() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), command.ended()).await;
    }
    Ok(())
}
