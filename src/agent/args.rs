//! The settings of `paddock agent`, as its provider passes them.

use std::path::PathBuf;

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
    /// Run commands as this user unless they name another: NAME, UID,
    /// NAME:GROUP or UID:GID, looked up in the sandbox's /etc/passwd and
    /// /etc/group. Files written through FileService belong to it too, and so
    /// does the workdir when the engine made it for root. Unset: the agent's
    /// own user.
    #[arg(long, value_name = "USER")]
    pub default_user: Option<String>,
    /// The most commands running at once.
    #[arg(long, default_value_t = 1024)]
    pub max_commands: usize,
    /// The bytes of output kept per command.
    #[arg(long, default_value_t = 64 << 20)]
    pub output_budget: u64,
    /// How long a command whose caller waits for it (RunCommand, an Exec
    /// stream that started it) runs with its record and output held in
    /// memory before they are written to the state directory. Its output
    /// passing 1 MiB, or its caller going away, writes them sooner.
    #[arg(long, value_name = "MILLISECONDS", default_value_t = 100)]
    pub held_grace_ms: u64,
}
