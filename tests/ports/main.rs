//! PortService and the preview proxy, driven like their users drive them:
//! raw bytes through PortForward, `paddock port-forward`, HTTP and a real
//! WebSocket client through the proxy, on every provider, against busybox
//! servers inside the sandboxes; then who may reach what (access.rs) and
//! what a big transfer costs the server (volume.rs).

#[path = "../common/mod.rs"]
mod common;

mod access;
mod forward;
mod proxy;
mod volume;

use bytes::Bytes;
use common::{Provider, TestServer, eventually};
use paddock::pb;
use paddock::pb::port_forward_request::Request as Up;
use paddock::pb::port_forward_response::Response as Down;
use paddock::pb::port_service_client::PortServiceClient;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// The port busybox httpd serves in the sandboxes.
const HTTP_PORT: u16 = 8000;
/// The page it serves.
const PAGE: &str = "hello from inside the sandbox";

/// A server for `provider` with a preview proxy on an ephemeral port.
async fn server_with_previews(provider: Provider) -> TestServer {
    TestServer::for_provider_with(provider, |args| {
        args.preview.preview_listen = Some("127.0.0.1:0".into());
    })
    .await
}

/// A running sandbox cut off the network, which its owner still reaches.
async fn offline_sandbox(server: &TestServer) -> String {
    server
        .running_sandbox(pb::CreateSandboxRequest {
            network: pb::NetworkMode::None as i32,
            ..Default::default()
        })
        .await
        .id
}

/// Starts `line` in the sandbox and leaves it running.
async fn detach(server: &TestServer, sandbox_id: &str, line: &str) {
    server
        .exec()
        .await
        .start_command(pb::StartCommandRequest {
            sandbox_id: sandbox_id.into(),
            spec: Some(pb::CommandSpec {
                shell: line.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("the server starts");
}

/// Starts busybox httpd on 127.0.0.1:`HTTP_PORT` in the sandbox, serving
/// [`PAGE`], and waits until it answers through a forward.
async fn serve_page(server: &TestServer, sandbox_id: &str) {
    server
        .shell(
            sandbox_id,
            &format!("mkdir -p /tmp/www && echo '{PAGE}' > /tmp/www/index.html"),
        )
        .await;
    detach(
        server,
        sandbox_id,
        &format!("exec busybox httpd -f -p 127.0.0.1:{HTTP_PORT} -h /tmp/www"),
    )
    .await;
    listening(server, sandbox_id, HTTP_PORT).await;
}

/// Waits until a forward to `port` connects.
async fn listening(server: &TestServer, sandbox_id: &str, port: u16) {
    eventually(Duration::from_secs(20), "the server listens", || async {
        Forward::open(server, sandbox_id, port).await.ok().map(drop)
    })
    .await;
}

/// An open PortForward stream.
struct Forward {
    requests: mpsc::Sender<pb::PortForwardRequest>,
    responses: tonic::Streaming<pb::PortForwardResponse>,
    /// The address the agent reached.
    address: String,
}

impl Forward {
    async fn open(server: &TestServer, sandbox_id: &str, port: u16) -> Result<Self, tonic::Status> {
        Self::open_at(server, sandbox_id, port, "").await
    }

    async fn open_at(
        server: &TestServer,
        sandbox_id: &str,
        port: u16,
        address: &str,
    ) -> Result<Self, tonic::Status> {
        let (requests, outgoing) = mpsc::channel(16);
        requests
            .send(message(Up::Start(pb::PortForwardStart {
                sandbox_id: sandbox_id.into(),
                port: u32::from(port),
                address: address.into(),
            })))
            .await
            .unwrap();
        let mut responses = PortServiceClient::new(server.channel().await)
            .port_forward(ReceiverStream::new(outgoing))
            .await?
            .into_inner();
        let Some(Down::Connected(connected)) = responses.message().await?.and_then(|m| m.response)
        else {
            panic!("the first answer is `connected`");
        };
        Ok(Self {
            requests,
            responses,
            address: connected.address,
        })
    }

    async fn send(&self, data: impl Into<Bytes>) {
        self.requests
            .send(message(Up::Data(data.into())))
            .await
            .unwrap();
    }

    /// Sends `request`, half-closes, and returns everything the sandbox's
    /// server sent until the forward ended, with how it ended.
    async fn exchange(mut self, request: &[u8]) -> (Vec<u8>, Result<(), tonic::Status>) {
        self.send(request.to_vec()).await;
        self.requests
            .send(message(Up::CloseWrite(pb::CloseWrite {})))
            .await
            .unwrap();
        let mut received = Vec::new();
        loop {
            match self.responses.message().await {
                Ok(Some(pb::PortForwardResponse {
                    response: Some(Down::Data(data)),
                })) => received.extend_from_slice(&data),
                Ok(Some(_)) => {}
                Ok(None) => return (received, Ok(())),
                Err(status) => return (received, Err(status)),
            }
        }
    }
}

fn message(request: Up) -> pb::PortForwardRequest {
    pb::PortForwardRequest {
        request: Some(request),
    }
}

/// One HTTP/1.1 request (`Connection: close`) to `addr`, raw: the status
/// code, the head and the body.
async fn http(addr: SocketAddr, head: &str) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{}\r\nConnection: close\r\n\r\n", head.trim_end());
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the answer ends")
        .unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head, answer[split + 4..].to_vec())
}

/// The path-form URL path of a sandbox's port.
fn preview_path(sandbox_id: &str, port: u16) -> String {
    format!("/preview/{sandbox_id}/{port}/")
}

/// The host-form host name of a sandbox's port under `localhost`.
fn preview_host(server: &TestServer, sandbox_id: &str, port: u16) -> String {
    format!(
        "{port}-{}.localhost:{}",
        sandbox_id.replacen('_', "-", 1),
        server.preview_addr.unwrap().port()
    )
}
