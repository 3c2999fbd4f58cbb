//! The agent's life: it loads the commands an earlier agent recorded, serves
//! ExecService, FileService and PortService's PortForward on its socket,
//! and on SIGTERM or SIGINT ends every command and exits.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::info;

use super::args::AgentArgs;
use super::reaper::Reaper;
use super::state::Agent;
use super::{files, ports, service, users};
use crate::pb;

/// Runs the agent until SIGTERM or SIGINT; then ends every command's process
/// group and exits.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(args.state_dir.join("commands"))
        .with_context(|| format!("cannot create {}", args.state_dir.display()))?;
    let env = match &args.env_file {
        Some(path) => serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not a JSON object of strings", path.display()))?,
        None => BTreeMap::new(),
    };
    let reaper = Reaper::start().context("cannot watch SIGCHLD")?;
    // As the engine does with an image's USER: a user that does not exist
    // stops the sandbox from starting, rather than running it as root.
    let default_user = match &args.default_user {
        Some(user) => {
            let identity = users::resolve(&args.root, user)
                .map_err(|why| anyhow::anyhow!("the sandbox's user {user:?}: {why}"))?;
            give_workdir_to(&args, &identity);
            Some(identity).filter(|identity| !identity.same_ids(&users::Identity::current()))
        }
        None => None,
    };
    let agent = Arc::new(Agent::new(args.clone(), env, reaper, default_user.clone()));

    let _ = std::fs::remove_file(&args.socket);
    let listener = UnixListener::bind(&args.socket)
        .with_context(|| format!("cannot listen on {}", args.socket.display()))?;
    info!(socket = %args.socket.display(), sandbox_id = %args.sandbox_id, "agent serving");

    let stopping = {
        let agent = agent.clone();
        async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            info!("agent stopping: ending every command");
            for command in agent.commands() {
                let _ = command.signal(libc::SIGKILL);
            }
        }
    };
    let service = service::AgentExec::new(agent.clone());
    let files_root = match &args.files_root {
        Some(dir) => files::root::Root::beneath(dir)
            .with_context(|| format!("cannot open the files root {}", dir.display()))?,
        None => files::root::Root::Whole {
            owner: default_user.map(|identity| (identity.uid, identity.gid)),
        },
    };
    let files = files::AgentFiles::new(files_root, args.workdir.clone());
    tonic::transport::Server::builder()
        .initial_stream_window_size(crate::wire::RECEIVE_STREAM_WINDOW)
        .initial_connection_window_size(crate::wire::RECEIVE_CONNECTION_WINDOW)
        .max_frame_size(Some(crate::wire::RECEIVE_MAX_FRAME))
        .add_service(
            pb::exec_service_server::ExecServiceServer::new(service)
                .max_decoding_message_size(4 << 20),
        )
        .add_service(
            pb::file_service_server::FileServiceServer::new(files)
                .max_decoding_message_size(4 << 20),
        )
        .add_service(
            pb::port_service_server::PortServiceServer::new(ports::AgentPorts)
                .max_decoding_message_size(4 << 20),
        )
        .serve_with_incoming_shutdown(
            {
                let peers = agent.peers().clone();
                UnixListenerStream::new(listener)
                    .map(move |accepted| accepted.map(|s| peers.track(s)))
            },
            stopping,
        )
        .await
        .context("the agent's gRPC server failed")?;
    // Let the killed commands record how they ended, and write those held in
    // memory to disk, for the next agent.
    for command in agent.commands() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), command.ended()).await;
    }
    agent.write_all_to_disk();
    Ok(())
}

/// Gives the workdir to the sandbox's user when the engine made it for root
/// (it makes a missing working directory as root, whatever the image's
/// USER), so that the user's commands can write where they start.
fn give_workdir_to(args: &AgentArgs, identity: &users::Identity) {
    use std::os::unix::fs::MetadataExt;
    let workdir = args.root.join(args.workdir.trim_start_matches('/'));
    let Ok(meta) = std::fs::metadata(&workdir) else {
        return;
    };
    if meta.uid() == 0
        && identity.uid != 0
        && args.workdir != "/"
        && let Err(error) =
            std::os::unix::fs::chown(&workdir, Some(identity.uid), Some(identity.gid))
    {
        tracing::warn!(%error, workdir = %workdir.display(), "cannot give the workdir to the sandbox's user");
    }
}
