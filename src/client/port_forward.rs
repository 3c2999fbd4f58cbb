//! `paddock port-forward`: local TCP listeners whose connections each
//! become a PortForward stream to a port inside a sandbox, as `kubectl
//! port-forward` does for pods.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, bail};
use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::commands::sandbox_id_of;
use super::{ClientArgs, Connection};
use crate::pb;
use crate::pb::port_forward_request::Request as Up;
use crate::pb::port_service_client::PortServiceClient;
use crate::pb::sandbox_service_client::SandboxServiceClient;
use crate::wire::forward::{self, CHANNEL_MESSAGES, PumpError};

/// `paddock port-forward`.
#[derive(Debug, clap::Args)]
pub struct PortForwardArgs {
    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub address: String,
    /// The sandbox's name or id.
    #[arg(value_name = "SANDBOX")]
    pub sandbox: String,
    /// The ports: LOCAL:REMOTE, REMOTE for the same port here, or :REMOTE
    /// for any free local port.
    #[arg(value_name = "[LOCAL:]REMOTE", required = true)]
    pub ports: Vec<String>,
}

/// One `[LOCAL:]REMOTE` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PortPair {
    local: u16,
    remote: u16,
}

fn port_pair(text: &str) -> anyhow::Result<PortPair> {
    let number = |part: &str, zero_ok: bool| -> anyhow::Result<u16> {
        match part.parse::<u16>() {
            Ok(0) if !zero_ok => bail!("{text:?}: port 0 cannot be forwarded to"),
            Ok(port) => Ok(port),
            Err(_) => bail!("{text:?} is not [LOCAL:]REMOTE with ports 1 to 65535"),
        }
    };
    match text.split_once(':') {
        Some(("", remote)) => Ok(PortPair {
            local: 0,
            remote: number(remote, false)?,
        }),
        Some((local, remote)) => Ok(PortPair {
            local: number(local, true)?,
            remote: number(remote, false)?,
        }),
        None => {
            let port = number(text, false)?;
            Ok(PortPair {
                local: port,
                remote: port,
            })
        }
    }
}

/// Listens on every asked port until Ctrl-C or SIGTERM, forwarding each
/// connection to the sandbox.
pub async fn port_forward(client: &ClientArgs, args: PortForwardArgs) -> anyhow::Result<ExitCode> {
    let pairs = args
        .ports
        .iter()
        .map(|text| port_pair(text))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let connection = client.connect().await?;
    let sandbox_id = sandbox_id_of(
        &mut SandboxServiceClient::new(connection.clone()),
        &args.sandbox,
    )
    .await?;
    let mut listeners = Vec::new();
    for pair in pairs {
        let listener = TcpListener::bind((args.address.as_str(), pair.local))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.address, pair.local))?;
        println!(
            "Forwarding from {} -> {}",
            listener.local_addr()?,
            pair.remote
        );
        listeners.push((listener, pair.remote));
    }
    for (listener, remote) in listeners {
        tokio::spawn(accept_loop(
            listener,
            connection.clone(),
            sandbox_id.clone(),
            remote,
        ));
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn accept_loop(
    listener: TcpListener,
    connection: Connection,
    sandbox_id: String,
    remote: u16,
) {
    loop {
        match listener.accept().await {
            Ok((socket, peer)) => {
                tokio::spawn(forward_connection(
                    socket,
                    peer,
                    connection.clone(),
                    sandbox_id.clone(),
                    remote,
                ));
            }
            Err(error) => {
                eprintln!("port-forward: cannot accept on port {remote}'s listener: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Forwards one local connection; says on stderr why it ended, when it
/// ended with an error.
async fn forward_connection(
    socket: TcpStream,
    peer: SocketAddr,
    connection: Connection,
    sandbox_id: String,
    remote: u16,
) {
    let _ = socket.set_nodelay(true);
    let (to_server, outgoing) = mpsc::channel(CHANNEL_MESSAGES);
    let start = pb::PortForwardRequest {
        request: Some(Up::Start(pb::PortForwardStart {
            sandbox_id,
            port: u32::from(remote),
            address: String::new(),
        })),
    };
    let _ = to_server.send(start).await;
    let mut ports = PortServiceClient::new(connection)
        .max_decoding_message_size(4 << 20)
        .max_encoding_message_size(4 << 20);
    let answers = match ports.port_forward(ReceiverStream::new(outgoing)).await {
        Ok(answers) => answers.into_inner(),
        Err(status) => {
            eprintln!("port-forward: {peer} -> {remote}: {}", status.message());
            return;
        }
    };
    let (reader, writer) = socket.into_split();
    let sending = tokio::spawn(async move {
        forward::socket_to_messages(reader, &to_server, pb::PortForwardRequest::from).await
    });
    let pieces = answers.filter_map(|answer| async move {
        answer.map(pb::PortForwardResponse::into_piece).transpose()
    });
    match forward::messages_to_socket(writer, pieces).await {
        Ok(()) => {
            // The sandbox's server finished sending; what this side still
            // sends goes on until it finishes too.
            let _ = sending.await;
        }
        Err(error) => {
            sending.abort();
            match error {
                PumpError::Messages(status) => {
                    eprintln!("port-forward: {peer} -> {remote}: {}", status.message());
                }
                PumpError::Socket(error) => {
                    eprintln!(
                        "port-forward: {peer} -> {remote}: the local connection broke: {error}"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_arguments_read_like_kubectls() {
        let pair = |local, remote| PortPair { local, remote };
        assert_eq!(port_pair("3000").unwrap(), pair(3000, 3000));
        assert_eq!(port_pair("8080:3000").unwrap(), pair(8080, 3000));
        assert_eq!(port_pair(":3000").unwrap(), pair(0, 3000));
        assert_eq!(port_pair("0:3000").unwrap(), pair(0, 3000));
        for bad in ["0", "3000:0", "x", "1:2:3", "70000", ""] {
            assert!(port_pair(bad).is_err(), "{bad}");
        }
    }
}
