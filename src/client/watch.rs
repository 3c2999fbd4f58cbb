//! `paddock watch`: sandbox lifecycle events, the retained ones and then
//! new ones as they happen, one per line.

use std::io::Write;
use std::process::ExitCode;

use super::ClientArgs;
use super::commands::{sandbox_id_of, state_name};
use super::output::{Format, json_line};
use crate::pb;
use crate::pb::sandbox_service_client::SandboxServiceClient;

/// `paddock watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Only this sandbox's events (a name or an id).
    #[arg(value_name = "SANDBOX")]
    pub sandbox: Option<String>,
    /// Start after this revision (an earlier event's, to resume); 0
    /// replays every retained event before following new ones.
    #[arg(long, value_name = "REVISION", default_value_t = 0)]
    pub after: i64,
    /// How to print each event.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Format,
}

/// Prints events until interrupted or the server goes away.
pub async fn watch(client: &ClientArgs, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let mut sandboxes = SandboxServiceClient::new(client.connect().await?);
    let sandbox_id = match &args.sandbox {
        Some(reference) => sandbox_id_of(&mut sandboxes, reference).await?,
        None => String::new(),
    };
    let mut events = sandboxes
        .watch_sandboxes(pb::WatchSandboxesRequest {
            after_revision: args.after,
            sandbox_id,
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    while let Some(event) = events.message().await? {
        match args.output {
            Format::Json => writeln!(
                out,
                "{}",
                json_line(&event, "paddock.v1.WatchSandboxesResponse")?
            )?,
            Format::Text => {
                let sandbox = event.sandbox.clone().unwrap_or_default();
                writeln!(
                    out,
                    "{:<8} {:<14} {} {} {}{}",
                    event.revision,
                    event
                        .r#type()
                        .as_str_name()
                        .trim_start_matches("SANDBOX_EVENT_TYPE_"),
                    sandbox.id,
                    if sandbox.name.is_empty() {
                        "-"
                    } else {
                        &sandbox.name
                    },
                    state_name(sandbox.state()),
                    if sandbox.state_reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", sandbox.state_reason)
                    },
                )?;
            }
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
