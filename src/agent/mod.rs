//! The in-sandbox agent: the sandbox's init (or subreaper), which runs
//! commands (posix_spawn, or fork/exec), owns their process groups and
//! terminals, keeps their output logs (in memory while a caller waits, else
//! on the sandbox's disk), and serves `paddock.v1.ExecService`
//! on a Unix socket that its provider hands to the control plane.
//!
//! This file only names the parts: the agent's state (state.rs) runs
//! commands (command.rs, spawn.rs, program.rs, output.rs, reaper.rs); the services (service.rs,
//! files/) act on that state; serve.rs wires them to the socket.

mod args;
pub mod bridge;
mod command;
mod files;
pub mod install;
mod output;
mod peers;
mod ports;
mod program;
mod reaper;
mod serve;
mod service;
mod spawn;
mod state;
mod users;

pub use args::AgentArgs;
pub use serve::run;
