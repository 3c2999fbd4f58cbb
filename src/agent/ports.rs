//! The agent's `paddock.v1.PortService`: it dials a TCP port from inside the
//! sandbox and moves the connection's bytes over the PortForward stream the
//! control plane relays. Only PortForward: exposing ports and preview URLs
//! are the control plane's business.
//!
//! It dials only the sandbox's own addresses (its loopback and its
//! interfaces): a forward reaches the sandbox's servers, never a host
//! beyond it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use crate::pb;
use crate::pb::port_service_server::PortService;
use crate::wire::forward::{self, PumpError};

/// How long a dial may take before the forward fails.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

type ForwardStream = Pin<Box<dyn Stream<Item = Result<pb::PortForwardResponse, Status>> + Send>>;

/// The agent's port service.
#[derive(Debug, Clone, Default)]
pub struct AgentPorts;

#[tonic::async_trait]
impl PortService for AgentPorts {
    type PortForwardStream = ForwardStream;

    async fn port_forward(
        &self,
        request: Request<Streaming<pb::PortForwardRequest>>,
    ) -> Result<Response<ForwardStream>, Status> {
        let mut requests = request.into_inner();
        let Some(pb::port_forward_request::Request::Start(start)) =
            requests.message().await?.and_then(|first| first.request)
        else {
            return Err(Status::invalid_argument(
                "the first PortForward message must be `start`",
            ));
        };
        let port = u16::try_from(start.port)
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| Status::invalid_argument("port: must be 1 to 65535"))?;
        let connection = dial(port, &start.address).await?;
        let address = connection
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        debug!(%address, "forwarding a connection");
        let _ = connection.set_nodelay(true);
        let (reader, writer) = connection.into_split();
        let (send, receive) = mpsc::channel(forward::CHANNEL_MESSAGES);
        send.send(Ok(response(
            pb::port_forward_response::Response::Connected(pb::PortForwardConnected { address }),
        )))
        .await
        .map_err(|_| Status::cancelled("the caller went away"))?;
        // The response stream ends when both directions are over: each task
        // holds a sender until its direction ends.
        let outgoing = send.clone();
        tokio::spawn(async move {
            let read =
                forward::socket_to_messages(reader, &outgoing, |piece| Ok(piece.into())).await;
            if let Err(error) = read {
                let _ = outgoing.send(Err(reset(port, &error))).await;
            }
        });
        tokio::spawn(async move {
            let pieces = requests.map(|message| {
                message?.into_piece().ok_or_else(|| {
                    Status::invalid_argument("only the first PortForward message may be `start`")
                })
            });
            match forward::messages_to_socket(writer, pieces).await {
                Ok(()) => {}
                Err(PumpError::Socket(error)) => {
                    let _ = send.send(Err(reset(port, &error))).await;
                }
                Err(PumpError::Messages(status)) => {
                    let _ = send.send(Err(status)).await;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receive))))
    }

    async fn expose_port(
        &self,
        _: Request<pb::ExposePortRequest>,
    ) -> Result<Response<pb::ExposePortResponse>, Status> {
        Err(only_forwards())
    }

    async fn unexpose_port(
        &self,
        _: Request<pb::UnexposePortRequest>,
    ) -> Result<Response<pb::UnexposePortResponse>, Status> {
        Err(only_forwards())
    }

    async fn create_preview_url(
        &self,
        _: Request<pb::CreatePreviewUrlRequest>,
    ) -> Result<Response<pb::CreatePreviewUrlResponse>, Status> {
        Err(only_forwards())
    }
}

fn only_forwards() -> Status {
    Status::unimplemented("the sandbox's agent forwards ports; the control plane exposes them")
}

fn response(response: pb::port_forward_response::Response) -> pb::PortForwardResponse {
    pb::PortForwardResponse {
        response: Some(response),
    }
}

fn reset(port: u16, error: &std::io::Error) -> Status {
    Status::aborted(format!(
        "the connection to port {port} in the sandbox broke: {error}"
    ))
}

/// Connects to `port` at `address`, which must be one of the sandbox's
/// own; with no address, at the loopback first, then at each of the
/// sandbox's addresses, until one accepts.
async fn dial(port: u16, address: &str) -> Result<TcpStream, Status> {
    let own = own_addresses();
    let candidates: Vec<IpAddr> = if address.is_empty() {
        [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
        .into_iter()
        .chain(own.iter().copied().filter(|ip| !ip.is_loopback()))
        .collect()
    } else {
        let ip: IpAddr = address.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "address: {address:?} is not an IP address (leave it empty for the sandbox's loopback)"
            ))
        })?;
        if !ip.is_loopback() && !own.contains(&ip) {
            return Err(Status::invalid_argument(format!(
                "address: {ip} is not an address of the sandbox; a forward reaches only the \
                 sandbox's own servers"
            )));
        }
        vec![ip]
    };
    // A refusal anywhere means nothing listens there; other failures (an
    // address family the sandbox lacks, such as IPv6) say less.
    let mut refused = false;
    let mut last_error = None;
    for ip in candidates {
        let target = SocketAddr::new(ip, port);
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                refused = true;
            }
            Ok(Err(error)) => last_error = Some(error),
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "port {port} in the sandbox did not accept within {}s",
                    DIAL_TIMEOUT.as_secs()
                )));
            }
        }
    }
    Err(match last_error {
        Some(error) if !refused => Status::unavailable(format!(
            "cannot connect to port {port} in the sandbox: {error}"
        )),
        _ => Status::failed_precondition(format!(
            "refused: nothing listens on port {port} in the sandbox"
        )),
    })
}

/// The addresses of the sandbox's network interfaces.
fn own_addresses() -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list that freeifaddrs frees;
    // each entry's address is read according to its family.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return addresses;
        }
        let mut entry = list;
        while !entry.is_null() {
            let address = (*entry).ifa_addr;
            if !address.is_null() {
                match i32::from((*address).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(address as *const libc::sockaddr_in);
                        addresses
                            .push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(address as *const libc::sockaddr_in6);
                        // Link-local addresses need a scope to dial: skip.
                        let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
                        if !ip.is_unicast_link_local() {
                            addresses.push(IpAddr::V6(ip));
                        }
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_is_among_the_own_addresses() {
        assert!(own_addresses().contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_with_a_sentence() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let status = dial(port, "").await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            status.message(),
            format!("refused: nothing listens on port {port} in the sandbox")
        );
    }

    #[tokio::test]
    async fn another_host_is_not_dialled() {
        let status = dial(80, "192.0.2.1").await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("not an address of the sandbox"));
    }
}
