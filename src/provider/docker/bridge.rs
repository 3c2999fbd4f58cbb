//! Reaching a container's agent through the engine: a long-lived exec of
//! `paddock agent-bridge` whose stdin and stdout carry HTTP/2 to the agent's
//! socket. It needs nothing from the container but the agent, so it works on
//! a remote engine and in a container with no network.
//!
//! A channel built here opens one bridge when it first needs a connection
//! and another after that one breaks; every call on the channel shares it. When the engine is local and the agent's socket is visible on
//! the server's filesystem, [`local_channel`] skips the engine altogether.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::WaitContainerOptions;
use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::{debug, warn};

use super::layout;
use crate::agent_client::AgentChannel;

/// How long opening a bridge may take, exec included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A channel to the agent of `container`, connecting through bridges on
/// demand.
pub(super) fn agent_channel(docker: Docker, container: String) -> AgentChannel {
    AgentChannel::connecting_with(CONNECT_TIMEOUT, move || {
        let docker = docker.clone();
        let container = container.clone();
        async move { open(&docker, &container).await }
    })
}

/// A channel to an agent whose socket the server can open itself: the engine
/// is local and the container's state volume is visible at `socket`'s
/// directory. No process is started per connection and no byte passes
/// through the engine, so a call costs what it costs on the process
/// provider. Connecting waits (up to [`CONNECT_TIMEOUT`]) for a starting
/// agent to bind the socket.
pub(super) fn local_channel(socket: PathBuf) -> AgentChannel {
    AgentChannel::connecting_with(CONNECT_TIMEOUT, move || {
        let socket = socket.clone();
        async move {
            let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
            loop {
                match tokio::net::UnixStream::connect(&socket).await {
                    Ok(stream) => return Ok(stream),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                        ) && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    })
}

/// Starts a bridge in `container` and returns its stdio as one byte pipe.
async fn open(docker: &Docker, container: &str) -> io::Result<ExecPipe> {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                user: Some("0"),
                cmd: Some(vec![
                    layout::AGENT_BINARY,
                    "agent-bridge",
                    "--socket",
                    layout::AGENT_SOCKET,
                ]),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| io::Error::other(format!("cannot start a bridge to the agent: {e}")))?;
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: Some(256 << 10),
            }),
        )
        .await
        .map_err(|e| io::Error::other(format!("cannot attach to the agent bridge: {e}")))?;
    match started {
        StartExecResults::Attached { output, input } => {
            debug!(container, exec_id = %exec.id, "agent bridge opened");
            // When the container stops, its exec's output does not always
            // end (under gVisor the engine keeps waiting for the exec'd
            // process of a dead sandbox): the container's own end ends the
            // pipe, so that calls on it fail instead of hanging.
            let mut exits = docker.wait_container(
                container,
                Some(WaitContainerOptions {
                    condition: "not-running".to_owned(),
                }),
            );
            let stopped = Box::pin(async move {
                let _ = exits.next().await;
            });
            Ok(ExecPipe {
                output,
                input,
                pending: Bytes::new(),
                container: container.to_owned(),
                stopped,
            })
        }
        StartExecResults::Detached => Err(io::Error::other(
            "the engine started the agent bridge detached",
        )),
    }
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// An attached exec's output frames read as a byte stream, and its stdin
/// written as one.
struct ExecPipe {
    output: OutputStream,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    /// Stdout bytes received but not yet read.
    pending: Bytes,
    container: String,
    /// Ready once the container is not running.
    stopped: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl AsyncRead for ExecPipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            let Poll::Ready(next) = self.output.as_mut().poll_next(cx) else {
                // Nothing to read: what is left ends with the container.
                if self.stopped.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("the container {} stopped", self.container),
                    )));
                }
                return Poll::Pending;
            };
            match next {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    self.pending = message;
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    warn!(
                        container = %self.container,
                        message = %String::from_utf8_lossy(&message).trim_end(),
                        "the agent bridge reports a problem"
                    );
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(error)) => return Poll::Ready(Err(io::Error::other(error))),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl AsyncWrite for ExecPipe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.input.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.input.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.input.as_mut().poll_shutdown(cx)
    }
}
