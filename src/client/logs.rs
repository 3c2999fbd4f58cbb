//! `paddock logs` and `paddock attach`: a command's retained output
//! replayed, then followed live until it ends.

use std::process::ExitCode;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ClientArgs;
use super::commands::sandbox_id_of;
use super::session::{
    exit_status, forward_signals, forward_stdin, print_output, print_until_exit, send,
};
use crate::pb;
use crate::pb::exec_request::Request as Req;
use crate::pb::exec_service_client::ExecServiceClient;
use crate::pb::sandbox_service_client::SandboxServiceClient;

/// `paddock logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Keep following the output until the command ends, then exit with
    /// its exit code.
    #[arg(short, long)]
    pub follow: bool,
    /// The sandbox's name or id.
    #[arg(value_name = "SANDBOX")]
    pub sandbox: String,
    /// The command's id (`paddock exec --detach` prints it).
    #[arg(value_name = "COMMAND")]
    pub command: String,
}

/// `paddock attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Pass this terminal's standard input to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// The sandbox's name or id.
    #[arg(value_name = "SANDBOX")]
    pub sandbox: String,
    /// The command's id.
    #[arg(value_name = "COMMAND")]
    pub command: String,
}

/// Prints a command's retained output; with `--follow`, follows it to its
/// end and returns its exit status. Without, stops at the output there was
/// when it began, returning the command's status if it had ended, else 0.
pub async fn logs(client: &ClientArgs, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let connection = client.connect().await?;
    let sandbox_id = sandbox_id_of(
        &mut SandboxServiceClient::new(connection.clone()),
        &args.sandbox,
    )
    .await?;
    let mut exec = ExecServiceClient::new(connection);
    let until_seq = if args.follow {
        None
    } else {
        let command = exec
            .get_command(pb::GetCommandRequest {
                sandbox_id: sandbox_id.clone(),
                command_id: args.command.clone(),
            })
            .await?
            .into_inner()
            .command
            .unwrap_or_default();
        // An ended command's stream ends with it; a running one's stops at
        // the output it had.
        (command.state() == pb::CommandState::Running).then_some(command.last_seq)
    };
    let (requests, rx) = mpsc::channel(4);
    send(&requests, attach(sandbox_id, args.command)).await;
    let mut responses = exec.exec(ReceiverStream::new(rx)).await?.into_inner();
    let ended = print_output(&mut responses, until_seq).await?;
    Ok(ended.map_or(ExitCode::SUCCESS, |exited| {
        ExitCode::from(exit_status(&exited))
    }))
}

/// Attaches this terminal to a running command: its output replayed and
/// followed, stdin (with `-i`) and Ctrl-C passed on; returns its exit
/// status. Leaving (the terminal closing) does not end the command.
pub async fn attach_command(client: &ClientArgs, args: AttachArgs) -> anyhow::Result<ExitCode> {
    let connection = client.connect().await?;
    let sandbox_id = sandbox_id_of(
        &mut SandboxServiceClient::new(connection.clone()),
        &args.sandbox,
    )
    .await?;
    let (requests, rx) = mpsc::channel(16);
    send(&requests, attach(sandbox_id, args.command)).await;
    let mut responses = ExecServiceClient::new(connection)
        .exec(ReceiverStream::new(rx))
        .await?
        .into_inner();
    if args.interactive {
        tokio::spawn(forward_stdin(requests.clone()));
    }
    tokio::spawn(forward_signals(requests));
    let exited = print_until_exit(&mut responses).await?;
    Ok(ExitCode::from(exit_status(&exited)))
}

/// The first message of a stream that replays a command's whole retained
/// output, then follows it.
fn attach(sandbox_id: String, command_id: String) -> Req {
    Req::Attach(pb::ExecAttach {
        sandbox_id,
        command_id,
        after_seq: 0,
    })
}
