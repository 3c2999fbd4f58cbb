//! `paddock mcp`: a Model Context Protocol server that gives coding agents
//! Paddock's sandboxes as tools, speaking to a Paddock server as a client.
//!
//! It serves one agent on standard input and output (how MCP clients launch
//! local servers), or many over streamable HTTP with `--http ADDR`. Every
//! tool names its sandbox by id or name; a call the server refuses comes
//! back as a tool error carrying the server's sentence, so the agent can
//! correct itself.

use std::net::SocketAddr;

use anyhow::Context;
use rmcp::ServiceExt;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tracing::{info, warn};

use super::{ClientArgs, Connection};

mod answers;
mod args;
mod tools;

/// What `paddock mcp` is told.
#[derive(Debug, Clone, clap::Args)]
pub struct McpArgs {
    /// Serve MCP's streamable HTTP transport on this address (at any path,
    /// conventionally http://ADDR/mcp) instead of standard input and output.
    /// Requests must name a loopback host, which keeps web pages from
    /// reaching it through DNS rebinding.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
}

/// How the server introduces itself to agents.
const INSTRUCTIONS: &str = "Paddock runs code in isolated sandboxes. Create a sandbox (or reuse \
one by name) with create_sandbox, then run shell commands in it and read, write, edit, list, find \
and grep its files; copy files between this machine and the sandbox with upload_file and \
download_file. Relative paths are relative to the sandbox's working directory. Delete the sandbox \
when the work is done.";

/// The MCP server: the connection to Paddock, and the tools.
#[derive(Clone)]
pub struct PaddockMcp {
    connection: Connection,
    tool_router: rmcp::handler::server::router::tool::ToolRouter<Self>,
}

#[rmcp::tool_handler(router = self.tool_router)]
impl rmcp::ServerHandler for PaddockMcp {
    fn get_info(&self) -> ServerConfig {
        let mut implementation = Implementation::from_build_env();
        implementation.name = "paddock".into();
        implementation.version = env!("CARGO_PKG_VERSION").into();
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(implementation)
            .with_instructions(INSTRUCTIONS)
    }
}

/// Runs `paddock mcp` until its client goes away (stdio) or it is
/// interrupted (HTTP).
pub async fn serve(client: &ClientArgs, args: McpArgs) -> anyhow::Result<()> {
    let connection = client.connect().await?;
    let server = PaddockMcp::new(connection);
    match args.http {
        None => {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .context("the MCP session did not start")?;
            running.waiting().await.context("the MCP session failed")?;
            Ok(())
        }
        Some(addr) => serve_http(server, addr).await,
    }
}

async fn serve_http(server: PaddockMcp, addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let service: StreamableHttpService<PaddockMcp, LocalSessionManager> =
        StreamableHttpService::new(
            move || Ok(server.clone()),
            Default::default(),
            StreamableHttpServerConfig::default(),
        );
    // Tests and scripts read the address from here when ADDR's port is 0.
    println!("MCP over streamable HTTP at http://{bound}/mcp");
    info!(%bound, "serving MCP over streamable HTTP");
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut interrupted => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "cannot accept a connection");
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let served =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            if let Err(e) = served {
                warn!(%peer, error = %e, "an MCP connection failed");
            }
        });
    }
    Ok(())
}
