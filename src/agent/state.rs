//! [`Agent`], the agent's state: its commands, launched with the sandbox's
//! environment and working directory, reloaded from an earlier agent's
//! records, forgotten past a count, and every process signalled.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tonic::Status;
use tracing::warn;

use super::args::AgentArgs;
use super::command::{Command, Hold, Launch};
use super::peers;
use super::reaper::Reaper;
use super::users::{self, Identity};
use crate::pb;

/// The PATH of commands whose environment sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The agent's state: its commands.
pub struct Agent {
    args: AgentArgs,
    env: BTreeMap<String, String>,
    reaper: Reaper,
    commands: Mutex<BTreeMap<String, Arc<Command>>>,
    /// Ended commands whose caller had all of them, held in memory.
    held: Mutex<HeldCommands>,
    /// The processes connected to the agent, spared by KillProcesses.
    peers: peers::Peers,
    /// Who commands run as when they name nobody; `None`: the agent's user.
    default_user: Option<Identity>,
    /// Whether the agent may run commands as another user (it holds
    /// CAP_SETUID and CAP_SETGID).
    can_switch_users: bool,
}

impl Agent {
    /// The agent of the sandbox `args` names, running commands with `env`
    /// and reaping their processes with `reaper`, with the commands an
    /// earlier agent recorded in the state directory.
    pub fn new(
        args: AgentArgs,
        env: BTreeMap<String, String>,
        reaper: Reaper,
        default_user: Option<Identity>,
    ) -> Self {
        let agent = Self {
            args,
            env,
            reaper,
            commands: Mutex::new(BTreeMap::new()),
            held: Mutex::new(HeldCommands::default()),
            peers: peers::Peers::default(),
            default_user,
            can_switch_users: holds_setuid_and_setgid(),
        };
        agent.load_commands();
        agent
    }

    /// The processes connected to the agent.
    pub fn peers(&self) -> &peers::Peers {
        &self.peers
    }

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

    /// Who a command asking for `user` runs as; `None`: the agent's own
    /// user. INVALID_ARGUMENT for a user the sandbox does not know,
    /// FAILED_PRECONDITION when the agent cannot switch users.
    fn identity_of(&self, user: &str) -> Result<Option<Identity>, Status> {
        let identity = if user.is_empty() {
            self.default_user.clone()
        } else {
            let identity = users::resolve(&self.args.root, user)
                .map_err(|why| Status::invalid_argument(format!("user: {why}")))?;
            // The agent's own uid, with no group asked for, needs no switch.
            let current = Identity::current();
            let needs_no_switch =
                identity.same_ids(&current) || (identity.uid == current.uid && !user.contains(':'));
            (!needs_no_switch).then_some(identity)
        };
        if identity.is_some() && !self.can_switch_users {
            return Err(Status::failed_precondition(format!(
                "user: every command in this sandbox runs as uid {}, which may not switch to \
                 another user (the process provider runs commands as the server's user); leave \
                 user empty",
                Identity::current().uid
            )));
        }
        Ok(identity)
    }

    /// Starts a command; `awaited`: a caller waits for it, so it may be held
    /// in memory (see [`Command::hold`]). RESOURCE_EXHAUSTED at the
    /// running-command limit; FAILED_PRECONDITION when the program cannot
    /// be started.
    pub fn launch(&self, spec: pb::CommandSpec, awaited: bool) -> Result<Arc<Command>, Status> {
        let running = {
            let commands = self.commands.lock().expect("commands");
            commands.values().filter(|c| c.is_running()).count()
        };
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
        let identity = self.identity_of(&spec.user)?;
        let mut env = BTreeMap::from([
            ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
            ("HOME".to_owned(), workdir.clone()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ]);
        if self.args.inherit_env {
            env.extend(std::env::vars());
        }
        if let Some(identity) = &identity {
            // The agent's own HOME and USER are root's.
            let home = identity.home.clone().unwrap_or_else(|| workdir.clone());
            env.insert("HOME".into(), home);
            for key in ["USER", "LOGNAME"] {
                match &identity.name {
                    Some(name) => env.insert(key.into(), name.clone()),
                    None => env.remove(key),
                };
            }
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
            identity,
            held_for: awaited.then(|| std::time::Duration::from_millis(self.args.held_grace_ms)),
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

    /// Notes that `command`'s caller has had all of it, which may then stay
    /// held in memory; the oldest commands so held go to disk when their
    /// output passes [`ENDED_HELD_BYTES`] altogether.
    pub fn delivered(&self, command: &Arc<Command>, hold: Hold) {
        hold.delivered();
        if command.is_on_disk() {
            return;
        }
        let over = {
            let mut held = self.held.lock().expect("held commands");
            // Counted as they were when delivered: one written out since
            // (an agent stopping) still leaves by its count.
            let bytes = command.log.held_bytes();
            held.bytes += bytes;
            held.commands.push_back((command.clone(), bytes));
            let mut over = Vec::new();
            while held.bytes > ENDED_HELD_BYTES || held.commands.len() > ENDED_COMMANDS_KEPT {
                let Some((oldest, bytes)) = held.commands.pop_front() else {
                    break;
                };
                held.bytes -= bytes;
                over.push(oldest);
            }
            over
        };
        for command in over {
            command.write_to_disk();
        }
    }

    /// Writes every command held in memory to disk: before the agent stops,
    /// so that the next agent knows them.
    pub fn write_all_to_disk(&self) {
        for command in self.commands() {
            command.write_to_disk();
        }
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
                if pid == 1
                    || self.peers.contains(pid)
                    || signalled.contains(&pid)
                    || is_bridge(pid)
                {
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

/// Whether process `pid` is a bridge carrying calls to this agent: this
/// program (by the path it was started as) run as `agent-bridge`. Under
/// gVisor the peer credentials of the agent's socket do not name the
/// bridge's process, and another process's `exe` link cannot be read, so
/// [`peers::Peers`] cannot spare it alone; the command line can be read.
fn is_bridge(pid: i32) -> bool {
    let Some(program) = std::env::args_os().next() else {
        return false;
    };
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        let mut args = cmdline.split(|b| *b == 0);
        args.next() == Some(program.as_encoded_bytes()) && args.next() == Some(b"agent-bridge")
    })
}

/// How many ended commands the agent keeps, with their output logs; older
/// ones are forgotten.
pub const ENDED_COMMANDS_KEPT: usize = 1000;

/// Forgets the oldest ended commands past [`ENDED_COMMANDS_KEPT`]. Ids sort by
/// time, so the map's order is the commands' age.
fn forget_oldest_ended(commands: &mut BTreeMap<String, Arc<Command>>) {
    if commands.len() <= ENDED_COMMANDS_KEPT {
        return;
    }
    let ended = commands.values().filter(|c| !c.is_running()).count();
    let excess = ended.saturating_sub(ENDED_COMMANDS_KEPT);
    let oldest: Vec<String> = commands
        .values()
        .filter(|c| !c.is_running())
        .take(excess)
        .map(|c| c.id.clone())
        .collect();
    for id in oldest {
        if let Some(command) = commands.remove(&id) {
            command.forget();
        }
    }
}

/// The most output bytes that ended commands hold in memory altogether;
/// past it the oldest go to disk.
pub const ENDED_HELD_BYTES: u64 = 8 << 20;

/// Ended commands held in memory, oldest first, each with its output
/// bytes, and their sum.
#[derive(Default)]
struct HeldCommands {
    commands: VecDeque<(Arc<Command>, u64)>,
    bytes: u64,
}

/// `path` (absolute, in the sandbox) in the agent's view of the filesystem.
fn sandbox_path(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Whether this process holds CAP_SETUID and CAP_SETGID, as
/// /proc/self/status says.
fn holds_setuid_and_setgid() -> bool {
    const CAP_SETGID: u32 = 6;
    const CAP_SETUID: u32 = 7;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SETUID) != 0 && caps & (1 << CAP_SETGID) != 0)
}
