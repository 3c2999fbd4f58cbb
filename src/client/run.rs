//! `paddock run`: a new sandbox, one command in it with this terminal
//! attached, its exit code passed through; with `--rm` the sandbox goes
//! away afterwards, as with `docker run --rm`.

use std::process::ExitCode;
use std::time::Duration;

use super::ClientArgs;
use super::commands::{CommandArgs, pairs, proto_duration, run_attached};
use crate::pb;
use crate::pb::sandbox_service_client::SandboxServiceClient;

/// `paddock run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The image (Docker provider) [default: the server's].
    #[arg(long)]
    pub image: Option<String>,
    /// The provider [default: the server's].
    #[arg(long)]
    pub provider: Option<String>,
    /// A name for the sandbox, unique among yours.
    #[arg(long)]
    pub name: Option<String>,
    /// A label KEY=VALUE; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// An environment variable KEY=VALUE of the sandbox; repeat for more.
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The sandbox's lifetime, such as 30m [default: the server's].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lifetime: Option<Duration>,
    /// Delete the sandbox when the command ends, however it ends.
    #[arg(long)]
    pub rm: bool,
    #[command(flatten)]
    pub command: CommandArgs,
}

/// Creates the sandbox, runs the command in it and returns the command's
/// exit status; prints the sandbox's id on stderr unless `--rm`.
pub async fn run(client: &ClientArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let connection = client.connect().await?;
    let mut sandboxes = SandboxServiceClient::new(connection.clone());
    let sandbox = sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            name: args.name,
            provider: args.provider.unwrap_or_default(),
            image: args.image.unwrap_or_default(),
            labels: pairs("--label", &args.labels)?,
            env: pairs("--env", &args.env)?,
            timeout: args.lifetime.map(proto_duration).transpose()?,
            ..Default::default()
        })
        .await?
        .into_inner()
        .sandbox
        .unwrap_or_default();
    if sandbox.state() == pb::SandboxState::Failed {
        anyhow::bail!("sandbox {} FAILED: {}", sandbox.id, sandbox.state_reason);
    }
    if !args.rm {
        eprintln!("paddock: sandbox {}", sandbox.id);
    }
    let ran = run_attached(
        connection,
        sandbox.id.clone(),
        Default::default(),
        &args.command,
    )
    .await;
    if args.rm {
        let deleted = sandboxes
            .delete_sandbox(pb::DeleteSandboxRequest {
                sandbox_id: sandbox.id.clone(),
            })
            .await;
        if let Err(status) = deleted {
            eprintln!(
                "paddock: cannot delete sandbox {}: {}",
                sandbox.id,
                status.message()
            );
        }
    }
    ran
}
