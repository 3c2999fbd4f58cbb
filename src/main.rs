//! The `paddock` command: the server, its key management, and the
//! command-line client.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use paddock::client::ClientArgs;
use paddock::client::commands::{ExecArgs, SandboxCommand};
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
    /// Make, list and revoke API keys, in the database the server uses.
    ///
    /// Give the same --data-dir, --database-url or --config as to `paddock
    /// serve`. A key is printed once, when it is made; the database keeps
    /// only its SHA-256.
    Keys(KeysArgs),
    /// Create, list, show, stop, start and delete sandboxes on a server.
    ///
    /// Reach the server with --server (plaintext, TLS or a Unix socket),
    /// --api-key and, for TLS, the --tls-* files.
    Sandbox {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// Run a command in a sandbox, as `paddock exec -it SANDBOX -- sh`.
    ///
    /// Exits with the command's exit code (128 + the signal number when a
    /// signal ended it, 124 when its --timeout did).
    Exec {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Create a sandbox and run one command in it, this terminal attached,
    /// as `paddock run --rm -it -- sh`.
    ///
    /// Exits with the command's exit code, as `paddock exec` does. The
    /// sandbox stays (its id is printed on stderr) unless --rm.
    Run {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        run: paddock::client::run::RunArgs,
    },
    /// Copy files or directories between this machine and a sandbox, as
    /// `paddock cp ./src dev:/work` or `paddock cp dev:/work/out .`.
    Cp {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        cp: paddock::client::cp::CpArgs,
    },
    /// Print a command's output (replayed from its log); with -f, follow it
    /// to its end and exit with its exit code.
    Logs {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        logs: paddock::client::logs::LogsArgs,
    },
    /// Attach this terminal to a running command: its output replayed and
    /// followed, Ctrl-C (and with -i, stdin) passed to it.
    Attach {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        attach: paddock::client::logs::AttachArgs,
    },
    /// Forward local TCP ports to ports inside a sandbox, as `paddock
    /// port-forward dev 8080:3000`: each connection to 127.0.0.1:8080 reaches
    /// port 3000 in the sandbox (its agent dials it there, whatever the
    /// sandbox's network), until Ctrl-C.
    PortForward {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        forward: paddock::client::port_forward::PortForwardArgs,
    },
    /// Build templates: `paddock template build -f Dockerfile -t NAME DIR`.
    Template {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: paddock::client::template::TemplateCommand,
    },
    /// Print sandbox lifecycle events as they happen (the retained ones
    /// first).
    Watch {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        watch: paddock::client::watch::WatchArgs,
    },
    /// Print a shell completion script: `paddock completions bash >
    /// /etc/bash_completion.d/paddock` (or zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Serve the Model Context Protocol for AI agents: sandboxes, commands
    /// and files as tools, on stdin/stdout or with --http over streamable
    /// HTTP.
    ///
    /// Reaches the Paddock server as the other client commands do (--server,
    /// --api-key). An agent's configuration runs it as
    /// `paddock mcp --server URL`.
    Mcp {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        mcp: paddock::client::mcp::McpArgs,
    },
    /// Run the in-sandbox agent (started by providers, not by hand).
    #[command(hide = true)]
    Agent(Box<paddock::agent::AgentArgs>),
    /// Join stdin and stdout to an agent's socket (run inside sandboxes by
    /// providers that reach their agent through a process's stdio).
    #[command(hide = true)]
    AgentBridge(paddock::agent::bridge::BridgeArgs),
    /// Copy this binary to a path (run by providers that deliver the agent
    /// from the Paddock image, such as the Kubernetes provider's init
    /// container).
    #[command(hide = true)]
    InstallAgent(paddock::agent::install::InstallArgs),
}

#[derive(Debug, clap::Args)]
struct KeysArgs {
    #[command(subcommand)]
    action: KeysAction,
    /// Read the database's location from this TOML file (as `paddock serve`).
    #[arg(long, env = "PADDOCK_CONFIG", value_name = "FILE", global = true)]
    config: Option<std::path::PathBuf>,
    /// The server's data directory (its SQLite database).
    #[arg(long, env = "PADDOCK_DATA_DIR", value_name = "DIR", global = true)]
    data_dir: Option<std::path::PathBuf>,
    /// The server's database, when it is not the SQLite file in the data
    /// directory.
    #[arg(long, env = "PADDOCK_DATABASE_URL", value_name = "URL", global = true)]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Make a key for a tenant and print it (once).
    Create {
        /// The tenant the key acts for: 1 to 63 letters, digits, '.', '_'
        /// or '-'.
        #[arg(long)]
        tenant: String,
        /// What the key is for, shown by `keys list`.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List keys (never the keys themselves).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by its id (key_…): calls with it fail from then on
    /// (servers trust a key they checked for up to a second).
    Revoke {
        /// The key's id, as `keys create` and `keys list` show it.
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => run_server(*args),
        Command::Keys(args) => run_keys(args),
        Command::Sandbox { client, command } => run_client(
            "sandbox",
            paddock::client::commands::sandbox(&client, command),
        ),
        Command::Exec { client, exec } => {
            run_client("exec", paddock::client::commands::exec(&client, exec))
        }
        Command::Run { client, run } => run_client("run", paddock::client::run::run(&client, run)),
        Command::Cp { client, cp } => run_client("cp", paddock::client::cp::cp(&client, cp)),
        Command::Logs { client, logs } => {
            run_client("logs", paddock::client::logs::logs(&client, logs))
        }
        Command::Attach { client, attach } => run_client(
            "attach",
            paddock::client::logs::attach_command(&client, attach),
        ),
        Command::PortForward { client, forward } => run_client(
            "port-forward",
            paddock::client::port_forward::port_forward(&client, forward),
        ),
        Command::Template { client, command } => run_client(
            "template",
            paddock::client::template::template(&client, command),
        ),
        Command::Watch { client, watch } => {
            run_client("watch", paddock::client::watch::watch(&client, watch))
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "paddock", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("paddock completions: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Mcp { client, mcp } => run_client("mcp", async move {
            paddock::client::mcp::serve(&client, mcp).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Agent(args) => run_agent(*args),
        Command::AgentBridge(args) => match paddock::agent::bridge::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("paddock agent-bridge: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::InstallAgent(args) => match paddock::agent::install::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("paddock install-agent: {error:#}");
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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paddock serve: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The trace exporter's channel lives on the runtime.
    let telemetry = {
        let _runtime = runtime.enter();
        paddock::telemetry::init_with_traces(
            config.log_format,
            &config.log_filter,
            config.otlp_endpoint.as_deref(),
        )
    };
    let telemetry = match telemetry {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("paddock serve: {error:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(endpoint) = &config.otlp_endpoint {
        tracing::info!(%endpoint, "exporting traces over OTLP");
    }
    let outcome = runtime.block_on(async {
        let server = Server::start(config).await?;
        server.serve(shutdown_signal()).await
    });
    // The exporter sends its last batch on its own thread, which may need
    // the runtime: flush before the runtime goes.
    let _runtime = runtime.enter();
    telemetry.shutdown();
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
    // One thread: a call wakes one thread, not one per task it hands work
    // to (each wake-up after idleness costs hundreds of microseconds on a
    // VM). File work runs on the blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
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

/// Runs a client command; a server's refusal is printed as its status code
/// and message.
fn run_client(
    name: &str,
    command: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paddock {name}: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(command);
    // A read of stdin still waiting on its blocking thread must not hold
    // the exit up.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        // A reader that stopped reading (`paddock watch | head`) is no
        // failure.
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(error) => {
            match error.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!(
                    "paddock {name}: {}: {}",
                    paddock::api::code_name(status.code()),
                    status.message()
                ),
                None => eprintln!("paddock {name}: {error:#}"),
            }
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

fn run_keys(args: KeysArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paddock keys: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(keys(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("paddock keys: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn keys(args: KeysArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use paddock::store::{SqlStore, Store};

    let config = ServerConfig::resolve(ServeArgs {
        config: args.config,
        data_dir: args.data_dir,
        database_url: args.database_url,
        ..ServeArgs::default()
    })?;
    let store = SqlStore::connect(&config.effective_database_url())
        .await
        .context("cannot open the state store")?;
    match args.action {
        KeysAction::Create {
            tenant,
            description,
        } => {
            let key = paddock::keys::generate(&tenant, &description)?;
            store.insert_api_key(&key.record).await?;
            eprintln!(
                "made {} for tenant {tenant}; the key is printed below, once: keep it now",
                key.record.id
            );
            println!("{}", key.secret);
        }
        KeysAction::List { tenant } => {
            println!(
                "{:<20}  {:<20}  {:<24}  {:<24}  DESCRIPTION",
                "ID", "TENANT", "CREATED", "REVOKED"
            );
            for key in store.list_api_keys(tenant.as_deref()).await? {
                let time =
                    |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
                println!(
                    "{:<20}  {:<20}  {:<24}  {:<24}  {}",
                    key.id,
                    key.tenant,
                    time(key.created_at),
                    key.revoked_at.map_or_else(|| "-".to_owned(), time),
                    key.description
                );
            }
        }
        KeysAction::Revoke { id } => {
            if !store
                .revoke_api_key(&id, std::time::SystemTime::now())
                .await?
            {
                anyhow::bail!("there is no key {id}; `paddock keys list` shows the keys");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}
