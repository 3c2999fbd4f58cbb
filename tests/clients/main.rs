//! Clients in other languages against a live server, run as their users
//! would run them: the Python package's examples (blocking and asyncio) on
//! every provider, a stock `grpcio` channel over a Unix socket with no
//! client option, an agent's session with `paddock mcp` through the
//! official MCP Python SDK, the TypeScript client's example over gRPC and
//! gRPC-Web, and the Go client's example.
//!
//! The interpreter comes from `PADDOCK_TEST_PYTHON` (scripts/test makes a
//! virtual environment with the client's dependencies in .tools/); without
//! it these tests skip, and fail under CI=true.

#[path = "../common/mod.rs"]
mod common;

mod go;
mod mcp;
mod python;
mod typescript;

use std::path::{Path, PathBuf};
use std::process::Output;

/// The Python interpreter that has the client's dependencies.
fn python() -> Option<PathBuf> {
    common::program_from("PADDOCK_TEST_PYTHON")
}

/// The checkout's `clients/` directory.
fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Runs a program to its end without blocking the test's runtime (the
/// server under test runs on it) and fails the test unless it succeeds.
async fn run_ok(what: &str, command: &mut tokio::process::Command) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        status.success(),
        "{what} failed ({status}):\n{stdout}\n{stderr}"
    );
    stdout
}
