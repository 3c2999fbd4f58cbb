//! `paddock mcp` driven by the official MCP Python SDK, over stdio and over
//! streamable HTTP; its sandboxes made from an image and from a template
//! with a warm pool.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::TestServer;
use crate::{python, run_ok};

fn session_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/mcp_session.py")
}

#[tokio::test]
async fn an_agent_works_in_a_sandbox_through_mcp_over_stdio() {
    let Some(python) = python() else { return };
    let server = TestServer::start().await;
    crate::common::warm::warm_template(&server, "mcp-ready", 1).await;
    let said = run_ok(
        "the MCP session over stdio",
        Command::new(&python)
            .arg(session_script())
            .args(["stdio", env!("CARGO_BIN_EXE_paddock")])
            .arg(format!("http://{}", server.addr))
            .env_remove("PADDOCK_API_KEY"),
    )
    .await;
    assert!(
        said.contains("mcp session over stdio: every step passed"),
        "{said}"
    );
}

#[tokio::test]
async fn an_agent_works_in_a_sandbox_through_mcp_over_http() {
    let Some(python) = python() else { return };
    let server = TestServer::start().await;
    crate::common::warm::warm_template(&server, "mcp-ready", 1).await;
    let mut mcp = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(["mcp", "--http", "127.0.0.1:0", "--server"])
        .arg(format!("http://{}", server.addr))
        .env_remove("PADDOCK_API_KEY")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("paddock mcp starts");
    let mut lines = BufReader::new(mcp.stdout.take().unwrap()).lines();
    let first = lines
        .next_line()
        .await
        .unwrap()
        .expect("paddock mcp says where it listens");
    let url = first
        .rsplit(' ')
        .next()
        .filter(|url| url.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    let said = run_ok(
        "the MCP session over streamable HTTP",
        Command::new(&python)
            .arg(session_script())
            .args(["http", &url]),
    )
    .await;
    assert!(
        said.contains("mcp session over http: every step passed"),
        "{said}"
    );
    mcp.start_kill().unwrap();
}
