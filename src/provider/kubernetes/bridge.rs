//! Reaching a pod's agent through the API server: the pod `exec`
//! subresource (WebSocket, `v5.channel.k8s.io`, or `v4` where the API server
//! has no v5) runs `paddock agent-bridge` in the sandbox container, and its
//! stdin and stdout carry HTTP/2 to the agent's socket. No pod network is
//! needed, so it reaches sandboxes whose NetworkPolicy refuses everything.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{AttachParams, AttachedProcess};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, SimplexStream, WriteHalf};
use tracing::debug;

use super::names::{AGENT_BINARY, AGENT_SOCKET, SANDBOX_CONTAINER};
use crate::agent_client::AgentChannel;

/// How long opening a bridge may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The bytes buffered each way between the WebSocket and the HTTP/2
/// connection.
const BUFFER: usize = 1 << 20;

/// A channel to the agent of `pod`, opening a bridge when it needs a
/// connection and another after that one breaks.
pub(super) fn agent_channel(pods: Api<Pod>, pod: String) -> AgentChannel {
    AgentChannel::connecting_with(CONNECT_TIMEOUT, move || {
        let pods = pods.clone();
        let pod = pod.clone();
        async move { open(&pods, &pod).await }
    })
}

async fn open(pods: &Api<Pod>, pod: &str) -> io::Result<ExecPipe> {
    let params = AttachParams::default()
        .container(SANDBOX_CONTAINER)
        .stdin(true)
        .stdout(true)
        .stderr(false)
        .max_stdin_buf_size(BUFFER)
        .max_stdout_buf_size(BUFFER);
    let mut process = pods
        .exec(
            pod,
            [AGENT_BINARY, "agent-bridge", "--socket", AGENT_SOCKET],
            &params,
        )
        .await
        .map_err(|e| io::Error::other(format!("cannot start a bridge to the agent: {e}")))?;
    let (Some(stdin), Some(stdout)) = (process.stdin(), process.stdout()) else {
        return Err(io::Error::other("the exec stream has no stdin or stdout"));
    };
    debug!(pod, "agent bridge opened");
    Ok(ExecPipe {
        _process: process,
        stdin,
        stdout,
    })
}

/// The bridge's stdout read, and its stdin written, as one byte pipe. The
/// process is kept: dropping it ends the WebSocket.
struct ExecPipe {
    _process: AttachedProcess,
    stdin: WriteHalf<SimplexStream>,
    stdout: ReadHalf<SimplexStream>,
}

impl AsyncRead for ExecPipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for ExecPipe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}
