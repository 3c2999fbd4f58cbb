//! The preview proxy's side towards the sandbox: a port forward through
//! the sandbox's agent, HTTP/1.1 over it, and WebSocket (or any other)
//! upgrades joined end to end.
//!
//! One downstream connection keeps its upstream connection for the next
//! request to the same sandbox port, as browsers keep theirs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::admit::{Visit, strip_credentials};
use super::answer::Body;
use super::site::PreviewSite;
use crate::agent_client::AgentClient;
use crate::error::{Error, Result};
use crate::pb;
use crate::pb::port_forward_request::Request as Up;
use crate::sandbox::Manager;
use crate::telemetry::Direction;
use crate::wire::forward::{self, CHANNEL_MESSAGES, CHUNK_BYTES, Piece};

/// The upstream connection one downstream connection keeps.
#[derive(Clone, Default)]
pub(super) struct Reuse(Arc<Mutex<Option<Kept>>>);

struct Kept {
    tenant: String,
    sandbox_id: String,
    port: u16,
    sender: SendRequest<hyper::body::Incoming>,
}

impl Reuse {
    /// The kept connection when it goes where `visit` goes and is open.
    fn take(&self, visit: &Visit) -> Option<SendRequest<hyper::body::Incoming>> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        (kept.tenant == visit.tenant
            && kept.sandbox_id == visit.sandbox_id
            && kept.port == visit.port
            && !kept.sender.is_closed())
        .then_some(kept.sender)
    }

    fn keep(&self, visit: &Visit, sender: SendRequest<hyper::body::Incoming>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Kept {
            tenant: visit.tenant.clone(),
            sandbox_id: visit.sandbox_id.clone(),
            port: visit.port,
            sender,
        });
    }
}

/// Sends `request` to the sandbox's server and returns its answer; an
/// upgrade the server accepts joins the two connections.
pub(super) async fn relay(
    manager: &Manager,
    site: &PreviewSite,
    mut request: http::Request<hyper::body::Incoming>,
    visit: Visit,
    peer: SocketAddr,
    reuse: &Reuse,
) -> Result<http::Response<Body>> {
    let upgrade = wants_upgrade(request.headers());
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let request = for_the_sandbox(request, &visit, peer, site)?;
    let mut sender = match reuse.take(&visit) {
        Some(sender) => sender,
        None => connect(manager, &visit).await?,
    };
    sender
        .ready()
        .await
        .map_err(|error| broke(&visit, &error))?;
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|error| broke(&visit, &error))?;
    if let Some(downstream_upgrade) = downstream_upgrade {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let (Ok(downstream), Ok(upstream)) =
                    tokio::join!(downstream_upgrade, upstream_upgrade)
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(downstream),
                    &mut TokioIo::new(upstream),
                )
                .await;
            });
        }
    } else {
        reuse.keep(&visit, sender);
    }
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        remove_hop_by_hop(response.headers_mut());
    }
    Ok(response.map(BodyExt::boxed))
}

/// `request` as the sandbox's server gets it: its path without the path
/// form's prefix, without the proxy's credentials and hop-by-hop headers,
/// with `X-Forwarded-*` saying where it came from.
fn for_the_sandbox(
    request: http::Request<hyper::body::Incoming>,
    visit: &Visit,
    peer: SocketAddr,
    site: &PreviewSite,
) -> Result<http::Request<hyper::body::Incoming>> {
    let (mut parts, body) = request.into_parts();
    parts.uri = visit
        .path_and_query
        .parse()
        .map_err(|_| Error::invalid_argument("path", "is not a valid request path"))?;
    parts.version = http::Version::HTTP_11;
    let upgrade = wants_upgrade(&parts.headers);
    let upgrade_to = parts.headers.get(header::UPGRADE).cloned();
    remove_hop_by_hop(&mut parts.headers);
    if let (true, Some(upgrade_to)) = (upgrade, upgrade_to) {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, upgrade_to);
    }
    strip_credentials(&mut parts.headers);
    let forwarded_for = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        parts.headers.insert("x-forwarded-for", value);
    }
    let proto = if site.urls.is_https() {
        "https"
    } else {
        "http"
    };
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static(proto));
    Ok(http::Request::from_parts(parts, body))
}

fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes the headers that describe one connection, not the message:
/// those RFC 9110 names and those its `Connection` header lists.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    for name in listed {
        headers.remove(name.as_str());
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn broke(visit: &Visit, error: &hyper::Error) -> Error {
    Error::unavailable(format!(
        "the server on port {} in sandbox {} closed the connection: {error}",
        visit.port, visit.sandbox_id
    ))
}

/// A new HTTP/1.1 connection to the sandbox's server.
async fn connect(manager: &Manager, visit: &Visit) -> Result<SendRequest<hyper::body::Incoming>> {
    let agent = manager.agent(&visit.tenant, &visit.sandbox_id).await?;
    let stream = open_forward(&agent, manager, visit).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| broke(visit, &error))?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}

/// A forward to the sandbox's port through its agent, as a local byte
/// stream: what is written to it goes to the sandbox's server, what that
/// server sends can be read from it.
async fn open_forward(
    agent: &AgentClient,
    manager: &Manager,
    visit: &Visit,
) -> Result<DuplexStream> {
    let (near, far) = tokio::io::duplex(CHUNK_BYTES);
    let (to_agent, outgoing) = mpsc::channel(CHANNEL_MESSAGES);
    let start = pb::PortForwardRequest {
        request: Some(Up::Start(pb::PortForwardStart {
            sandbox_id: visit.sandbox_id.clone(),
            port: u32::from(visit.port),
            address: String::new(),
        })),
    };
    let _ = to_agent.send(start).await;
    let answers = agent.port_forward(ReceiverStream::new(outgoing)).await?;
    let (far_read, far_write) = tokio::io::split(far);
    let metrics = manager.metrics().clone();
    tokio::spawn(async move {
        let _ = forward::socket_to_messages(far_read, &to_agent, |piece| {
            if let Piece::Data(data) = &piece {
                metrics.bytes_moved(Direction::ForwardIn, data.len() as u64);
            }
            pb::PortForwardRequest::from(piece)
        })
        .await;
    });
    let manager = manager.clone();
    let sandbox_id = visit.sandbox_id.clone();
    let pieces = answers.filter_map(move |answer| {
        let manager = manager.clone();
        let sandbox_id = sandbox_id.clone();
        async move {
            let piece = answer
                .map(pb::PortForwardResponse::into_piece)
                .transpose()?;
            if let Ok(Piece::Data(data)) = &piece {
                manager
                    .metrics()
                    .bytes_moved(Direction::ForwardOut, data.len() as u64);
                let _ = manager.note_activity(&sandbox_id).await;
            }
            Some(piece)
        }
    });
    tokio::spawn(async move {
        let mut far_write = far_write;
        if forward::messages_to_socket(&mut far_write, pieces)
            .await
            .is_err()
        {
            // The forward broke: the HTTP client reads the end, not a hang.
            let _ = far_write.shutdown().await;
        }
    });
    Ok(near)
}
