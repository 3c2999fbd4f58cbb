//! The processes connected to the agent's socket. When the agent is its
//! sandbox's init, KillProcesses must not kill them: on Docker they are the
//! bridges that carry the control plane's calls, and killing one would cut
//! the very call that asked.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

/// The process ids of live connections' peers, each with its number of open
/// connections.
#[derive(Debug, Default, Clone)]
pub struct Peers(Arc<Mutex<HashMap<i32, usize>>>);

impl Peers {
    /// Wraps an accepted connection, counting its peer until it closes.
    pub fn track(&self, stream: UnixStream) -> PeerStream {
        let pid = stream.peer_cred().ok().and_then(|cred| cred.pid());
        if let Some(pid) = pid {
            *self.0.lock().expect("peers").entry(pid).or_default() += 1;
        }
        PeerStream {
            inner: stream,
            pid,
            peers: self.clone(),
        }
    }

    /// Whether process `pid` holds a connection to the agent now.
    pub fn contains(&self, pid: i32) -> bool {
        self.0.lock().expect("peers").contains_key(&pid)
    }
}

/// A connection whose peer is counted in [`Peers`] while it is open.
pub struct PeerStream {
    inner: UnixStream,
    pid: Option<i32>,
    peers: Peers,
}

impl Drop for PeerStream {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let mut peers = self.peers.0.lock().expect("peers");
            if let Some(count) = peers.get_mut(&pid) {
                *count -= 1;
                if *count == 0 {
                    peers.remove(&pid);
                }
            }
        }
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
