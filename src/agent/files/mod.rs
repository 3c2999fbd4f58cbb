//! The agent's `paddock.v1.FileService`: files read and written with direct
//! system calls inside the sandbox, transfers streamed chunk by chunk.
//!
//! Blocking file work runs on tokio's blocking threads; a transfer holds at
//! most a few chunks in memory whatever its size.
//!
//! This file only names the parts: the service (service.rs) calls the file
//! operations (ops.rs, archive.rs), which share paths.rs, staged.rs and
//! limits.rs, and nothing imports the service but the agent.

mod archive;
mod limits;
mod ops;
mod paths;
pub mod root;
mod service;
mod staged;

pub use service::AgentFiles;
