//! The `paddock` command: the server and, later, its command-line client.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use paddock::config::{ServeArgs, ServerConfig};
use paddock::server::Server;

/// Paddock: a gRPC control plane for code-execution sandboxes.
#[derive(Debug, Parser)]
#[command(name = "paddock", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server (SandboxService, gRPC health and reflection).
    ///
    /// Settings come from flags, then PADDOCK_* environment variables, then
    /// the TOML file named by --config, then the defaults shown.
    Serve(Box<ServeArgs>),
    /// Run the in-sandbox agent (started by providers, not by hand).
    #[command(hide = true)]
    Agent(Box<paddock::agent::AgentArgs>),
    /// Join stdin and stdout to an agent's socket (run inside sandboxes by
    /// providers that reach their agent through a process's stdio).
    #[command(hide = true)]
    AgentBridge(paddock::agent::bridge::BridgeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => run_server(*args),
        Command::Agent(args) => run_agent(*args),
        Command::AgentBridge(args) => match paddock::agent::bridge::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("paddock agent-bridge: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run_server(args: ServeArgs) -> ExitCode {
    let config = match ServerConfig::resolve(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("paddock serve: {error:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = paddock::telemetry::init(config.log_format, &config.log_filter) {
        eprintln!("paddock serve: {error:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paddock serve: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let server = Server::start(config).await?;
        server.serve(shutdown_signal()).await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "server failed");
            eprintln!("paddock serve: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_agent(args: paddock::agent::AgentArgs) -> ExitCode {
    if let Err(error) = paddock::telemetry::init(paddock::telemetry::LogFormat::Human, "info") {
        eprintln!("paddock agent: {error:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paddock agent: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(paddock::agent::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("paddock agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}
