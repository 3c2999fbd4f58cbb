//! `paddock sandbox …` and `paddock exec`: thin commands over the generated
//! clients. Server errors are printed as the status code and its message.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ClientArgs;
use super::output::{Format, json_array, json_pretty};
use super::session::{
    exit_status, forward_resizes, forward_signals, forward_stdin, print_until_exit, send,
};
use super::terminal::{RawMode, size};
use crate::pb;
use crate::pb::exec_request::Request as Req;
use crate::pb::exec_service_client::ExecServiceClient;
use crate::pb::sandbox_service_client::SandboxServiceClient;

/// What `paddock sandbox` does.
#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox and print its id once it is RUNNING.
    Create {
        /// The image (Docker provider).
        #[arg(long, conflicts_with = "template")]
        image: Option<String>,
        /// A template, NAME (its latest version) or NAME@VERSION.
        #[arg(long)]
        template: Option<String>,
        /// The provider [default: the server's].
        #[arg(long)]
        provider: Option<String>,
        /// A name, unique among your sandboxes.
        #[arg(long)]
        name: Option<String>,
        /// A label KEY=VALUE; repeat for more.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
        /// An environment variable KEY=VALUE; repeat for more.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The sandbox's lifetime, such as 30m [default: the server's].
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
    /// List your sandboxes.
    List {
        /// Only those whose labels match, such as "team=ml,!scratch".
        #[arg(long, default_value = "")]
        selector: String,
        /// How to print: text, or json (protobuf's JSON mapping).
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Show one sandbox.
    Get {
        /// The sandbox's name or id.
        #[arg(value_name = "SANDBOX")]
        id: String,
        /// How to print: text, or json (protobuf's JSON mapping).
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
    /// Stop a sandbox, keeping its filesystem.
    Stop {
        /// The sandbox's name or id.
        #[arg(value_name = "SANDBOX")]
        id: String,
    },
    /// Start a stopped sandbox.
    Start {
        /// The sandbox's name or id.
        #[arg(value_name = "SANDBOX")]
        id: String,
    },
    /// Delete a sandbox and everything in it.
    Delete {
        /// The sandbox's name or id.
        #[arg(value_name = "SANDBOX")]
        id: String,
    },
    /// List the server's providers and whether they are available.
    Providers {
        /// How to print: text, or json (protobuf's JSON mapping).
        #[arg(short, long, value_enum, default_value_t)]
        output: Format,
    },
}

/// How a command runs from this terminal; `paddock exec` and `paddock run`
/// take these.
#[derive(Debug, Clone, clap::Args)]
pub struct CommandArgs {
    /// Pass this terminal's standard input to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Run the command under a terminal sized like this one (raw mode
    /// here: Ctrl-C goes to the command).
    #[arg(short, long)]
    pub tty: bool,
    /// The working directory in the sandbox.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// End the command after this long, such as 30s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `paddock exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Start the command detached: print its id and return; it runs on,
    /// and `paddock logs -f SANDBOX ID` follows it.
    #[arg(short, long, conflicts_with_all = ["interactive", "tty"])]
    pub detach: bool,
    /// An environment variable KEY=VALUE for the command; repeat for more.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The sandbox's name or id.
    #[arg(value_name = "SANDBOX")]
    pub sandbox: String,
    #[command(flatten)]
    pub command: CommandArgs,
}

/// Runs a `paddock sandbox` command; the exit code is 0 or 1.
pub async fn sandbox(client: &ClientArgs, command: SandboxCommand) -> anyhow::Result<ExitCode> {
    let mut sandboxes = SandboxServiceClient::new(client.connect().await?);
    let mut out = std::io::stdout().lock();
    match command {
        SandboxCommand::Create {
            image,
            template,
            provider,
            name,
            labels,
            env,
            timeout,
        } => {
            let created = sandboxes
                .create_sandbox(pb::CreateSandboxRequest {
                    name,
                    provider: provider.unwrap_or_default(),
                    image: image.unwrap_or_default(),
                    template: template.unwrap_or_default(),
                    labels: pairs("--label", &labels)?,
                    env: pairs("--env", &env)?,
                    timeout: timeout.map(proto_duration).transpose()?,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let sandbox = created.sandbox.unwrap_or_default();
            if sandbox.state() == pb::SandboxState::Failed {
                anyhow::bail!("sandbox {} FAILED: {}", sandbox.id, sandbox.state_reason);
            }
            writeln!(out, "{}", sandbox.id)?;
        }
        SandboxCommand::List { selector, output } => {
            let mut listed = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = sandboxes
                    .list_sandboxes(pb::ListSandboxesRequest {
                        label_selector: selector.clone(),
                        page_size: 1000,
                        page_token,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                listed.extend(page.sandboxes);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if output == Format::Json {
                writeln!(out, "{}", json_array(&listed, "paddock.v1.Sandbox")?)?;
                return Ok(ExitCode::SUCCESS);
            }
            writeln!(
                out,
                "{:<38} {:<20} {:<9} {:<8} IMAGE",
                "ID", "NAME", "STATE", "PROVIDER"
            )?;
            for sandbox in &listed {
                writeln!(
                    out,
                    "{:<38} {:<20} {:<9} {:<8} {}",
                    sandbox.id,
                    sandbox.name,
                    state_name(sandbox.state()),
                    sandbox.provider,
                    sandbox.image
                )?;
            }
        }
        SandboxCommand::Get { id, output } => {
            let sandbox_id = sandbox_id_of(&mut sandboxes, &id).await?;
            let sandbox = sandboxes
                .get_sandbox(pb::GetSandboxRequest { sandbox_id })
                .await?
                .into_inner()
                .sandbox
                .unwrap_or_default();
            match output {
                Format::Json => writeln!(out, "{}", json_pretty(&sandbox, "paddock.v1.Sandbox")?)?,
                Format::Text => show(&mut out, &sandbox)?,
            }
        }
        SandboxCommand::Stop { id } => {
            let sandbox_id = sandbox_id_of(&mut sandboxes, &id).await?;
            let stopped = sandboxes
                .stop_sandbox(pb::StopSandboxRequest { sandbox_id })
                .await?
                .into_inner()
                .sandbox
                .unwrap_or_default();
            writeln!(out, "{} {}", stopped.id, state_name(stopped.state()))?;
        }
        SandboxCommand::Start { id } => {
            let sandbox_id = sandbox_id_of(&mut sandboxes, &id).await?;
            let started = sandboxes
                .start_sandbox(pb::StartSandboxRequest { sandbox_id })
                .await?
                .into_inner()
                .sandbox
                .unwrap_or_default();
            writeln!(out, "{} {}", started.id, state_name(started.state()))?;
        }
        SandboxCommand::Delete { id } => {
            let sandbox_id = sandbox_id_of(&mut sandboxes, &id).await?;
            let deleted = sandboxes
                .delete_sandbox(pb::DeleteSandboxRequest { sandbox_id })
                .await?
                .into_inner()
                .sandbox
                .unwrap_or_default();
            writeln!(out, "{} {}", deleted.id, state_name(deleted.state()))?;
        }
        SandboxCommand::Providers { output } => {
            let providers = sandboxes
                .list_providers(pb::ListProvidersRequest {})
                .await?
                .into_inner()
                .providers;
            if output == Format::Json {
                writeln!(out, "{}", json_array(&providers, "paddock.v1.Provider")?)?;
                return Ok(ExitCode::SUCCESS);
            }
            for provider in providers {
                writeln!(
                    out,
                    "{}{} {}: {}",
                    provider.name,
                    if provider.is_default {
                        " (default)"
                    } else {
                        ""
                    },
                    if provider.available {
                        "available"
                    } else {
                        "unavailable"
                    },
                    provider.detail
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a command in a sandbox through an Exec stream and returns its exit
/// code (128 + the signal number when a signal ended it, 124 when its
/// timeout did, as `timeout(1)` does); with `--detach`, starts it and
/// prints its id.
pub async fn exec(client: &ClientArgs, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let connection = client.connect().await?;
    let sandbox_id = sandbox_id_of(
        &mut SandboxServiceClient::new(connection.clone()),
        &args.sandbox,
    )
    .await?;
    let env = pairs("--env", &args.env)?;
    if args.detach {
        let started = ExecServiceClient::new(connection)
            .start_command(pb::StartCommandRequest {
                sandbox_id,
                spec: Some(pb::CommandSpec {
                    command: args.command.command,
                    env,
                    workdir: args.command.workdir.unwrap_or_default(),
                    timeout: args.command.timeout.map(proto_duration).transpose()?,
                    ..Default::default()
                }),
            })
            .await?
            .into_inner();
        println!("{}", started.command.unwrap_or_default().id);
        return Ok(ExitCode::SUCCESS);
    }
    run_attached(connection, sandbox_id, env, &args.command).await
}

/// Runs `args` in the sandbox, this terminal attached, and returns its
/// shell-style exit status.
pub async fn run_attached(
    connection: super::Connection,
    sandbox_id: String,
    env: std::collections::HashMap<String, String>,
    args: &CommandArgs,
) -> anyhow::Result<ExitCode> {
    let mut exec = ExecServiceClient::new(connection);
    let stdin_fd = std::io::stdin();
    let (rows, cols) = if args.tty {
        size(stdin_fd.as_fd()).unwrap_or((24, 80))
    } else {
        (0, 0)
    };
    let (requests, rx) = mpsc::channel(16);
    requests
        .send(pb::ExecRequest {
            request: Some(Req::Start(pb::ExecStart {
                sandbox_id,
                spec: Some(pb::CommandSpec {
                    command: args.command.clone(),
                    env,
                    workdir: args.workdir.clone().unwrap_or_default(),
                    tty: args.tty,
                    rows,
                    cols,
                    timeout: args.timeout.map(proto_duration).transpose()?,
                    ..Default::default()
                }),
                // A command typed at a terminal ends with the client, as
                // with ssh.
                on_disconnect: pb::OnDisconnect::Kill as i32,
            })),
        })
        .await?;
    let mut responses = exec.exec(ReceiverStream::new(rx)).await?.into_inner();

    if args.interactive {
        tokio::spawn(forward_stdin(requests.clone()));
    } else {
        let _ = send(&requests, Req::CloseStdin(pb::CloseStdin {})).await;
    }
    let raw = if args.tty {
        tokio::spawn(forward_resizes(requests.clone()));
        RawMode::enter(stdin_fd.as_fd())
    } else {
        tokio::spawn(forward_signals(requests.clone()));
        None
    };

    let exited = print_until_exit(&mut responses).await?;
    drop(raw);
    Ok(ExitCode::from(exit_status(&exited)))
}

/// The id of the sandbox `reference` names: `reference` itself when it is
/// an id (`sbx_…`), else the id of the caller's sandbox of that name, as
/// `docker` takes a container's name or id.
pub async fn sandbox_id_of(
    sandboxes: &mut SandboxServiceClient<super::Connection>,
    reference: &str,
) -> anyhow::Result<String> {
    if crate::ids::is_sandbox_id(reference) {
        return Ok(reference.to_owned());
    }
    let mut page_token = String::new();
    loop {
        let page = sandboxes
            .list_sandboxes(pb::ListSandboxesRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        if let Some(sandbox) = page.sandboxes.iter().find(|s| s.name == reference) {
            return Ok(sandbox.id.clone());
        }
        if page.next_page_token.is_empty() {
            anyhow::bail!("no sandbox of yours is named {reference:?}, and it is not a sandbox id");
        }
        page_token = page.next_page_token;
    }
}

pub fn pairs(
    flag: &str,
    items: &[String],
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("{flag} {item:?} is not KEY=VALUE"))
        })
        .collect()
}

pub fn proto_duration(duration: Duration) -> anyhow::Result<prost_types::Duration> {
    prost_types::Duration::try_from(duration).context("the duration is too long")
}

/// A sandbox state as people read it: RUNNING, not SANDBOX_STATE_RUNNING.
pub fn state_name(state: pb::SandboxState) -> &'static str {
    state
        .as_str_name()
        .strip_prefix("SANDBOX_STATE_")
        .unwrap_or("UNSPECIFIED")
}

fn show(out: &mut impl Write, sandbox: &pb::Sandbox) -> std::io::Result<()> {
    let time = |t: &Option<prost_types::Timestamp>| {
        t.as_ref().map_or_else(String::new, ToString::to_string)
    };
    writeln!(out, "id:          {}", sandbox.id)?;
    writeln!(out, "name:        {}", sandbox.name)?;
    writeln!(out, "state:       {}", state_name(sandbox.state()))?;
    if !sandbox.state_reason.is_empty() {
        writeln!(out, "reason:      {}", sandbox.state_reason)?;
    }
    writeln!(out, "provider:    {}", sandbox.provider)?;
    writeln!(out, "image:       {}", sandbox.image)?;
    if !sandbox.template.is_empty() {
        writeln!(out, "template:    {}", sandbox.template)?;
    }
    writeln!(out, "workdir:     {}", sandbox.workdir)?;
    let mut labels: Vec<_> = sandbox
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    writeln!(out, "labels:      {}", labels.join(","))?;
    writeln!(out, "env keys:    {}", sandbox.env_keys.join(","))?;
    writeln!(out, "created:     {}", time(&sandbox.create_time))?;
    writeln!(out, "expires:     {}", time(&sandbox.expire_time))?;
    Ok(())
}
