//! [`AgentChannel`]: the one way a provider hands the domain a connection to
//! a sandbox's agent, with the HTTP/2 settings every agent connection uses.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::{Channel, Endpoint};

use crate::wire::{RECEIVE_CONNECTION_WINDOW, RECEIVE_MAX_FRAME, RECEIVE_STREAM_WINDOW};

/// How long connecting to an agent over a local socket may take.
const UNIX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to one sandbox's agent, which serves `paddock.v1.ExecService`
/// and `paddock.v1.FileService`. Opaque to the domain, which only keeps it;
/// [`super::AgentClient`] speaks through it.
///
/// It connects lazily, when a call first needs it, and again after the
/// connection breaks; calls fail with UNAVAILABLE while the agent cannot be
/// reached. Cloning it shares the connection.
#[derive(Clone, Debug)]
pub struct AgentChannel {
    pub(super) channel: Channel,
}

impl AgentChannel {
    /// A channel whose connections `connect` opens: a byte pipe to the
    /// agent's socket, however the provider reaches it (a Unix socket, an
    /// exec of `paddock agent-bridge`, an API server's exec stream). Each
    /// attempt may take `connect_timeout`.
    pub fn connecting_with<F, Fut, Pipe>(connect_timeout: Duration, connect: F) -> Self
    where
        F: Fn() -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = io::Result<Pipe>> + Send + 'static,
        Pipe: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let channel = endpoint()
            .connect_timeout(connect_timeout)
            .connect_with_connector_lazy(tower::service_fn(move |_| {
                let connect = connect.clone();
                async move { connect().await.map(TokioIo::new) }
            }));
        Self { channel }
    }

    /// A channel to an agent listening on the Unix socket `socket`.
    pub fn unix_socket(socket: PathBuf) -> Self {
        Self::connecting_with(UNIX_CONNECT_TIMEOUT, move || {
            tokio::net::UnixStream::connect(socket.clone())
        })
    }
}

/// The HTTP/2 settings of every agent connection: receive windows and
/// frames as large as the server's own, so that a command's output and a
/// download arrive in a few large frames instead of 16 KiB ones, each a
/// wakeup, and keep flowing without waiting for window updates. The URI is
/// required by tonic and never resolved: connectors open the pipe.
fn endpoint() -> Endpoint {
    Endpoint::from_static("http://agent.invalid")
        .initial_stream_window_size(RECEIVE_STREAM_WINDOW)
        .initial_connection_window_size(RECEIVE_CONNECTION_WINDOW)
        .max_frame_size(RECEIVE_MAX_FRAME)
}
