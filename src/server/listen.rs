//! Where the gRPC API listens ([`BoundAddr`]): a TCP port, or a Unix
//! socket whose stale file a dead server left is cleared first; and the
//! refusal to listen beyond loopback without authentication.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::net::{TcpListener, UnixListener};

use crate::config::ListenAddr;

/// Where a started server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAddr {
    /// A TCP socket.
    Tcp(SocketAddr),
    /// A Unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A bound listener of the gRPC API.
pub(super) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Why a server without authentication will not listen on `addr`.
pub(super) fn refusal(addr: &str) -> String {
    format!(
        "refusing to listen on {addr} without authentication: anyone who can reach it could \
         run code in sandboxes. Use --auth keys (and make keys with `paddock keys create \
         --tenant NAME`), or listen on loopback (127.0.0.1) or a Unix socket"
    )
}

pub(super) async fn bind(listen: &ListenAddr) -> anyhow::Result<(Listener, BoundAddr)> {
    match listen {
        ListenAddr::Tcp(host_port) => {
            let listener = bind_tcp(host_port, "listen address", "listen on", "--listen").await?;
            let bound = listener.local_addr()?;
            Ok((Listener::Tcp(listener), BoundAddr::Tcp(bound)))
        }
        ListenAddr::Unix(path) => {
            remove_stale_socket(path).await?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| {
                    format!("cannot create the socket directory {}", parent.display())
                })?;
            }
            let listener = UnixListener::bind(path)
                .with_context(|| format!("cannot listen on unix:{}", path.display()))?;
            // Only the server's user may connect: the socket is the API.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            Ok((
                Listener::Unix(listener, path.clone()),
                BoundAddr::Unix(path.clone()),
            ))
        }
    }
}

/// Removes a socket file left by a server that is gone; refuses to touch a
/// live socket or anything that is not a socket.
async fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        );
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        bail!(
            "another server is listening on unix:{}; stop it or pick another path",
            path.display()
        );
    }
    std::fs::remove_file(path)
        .with_context(|| format!("cannot remove the stale socket {}", path.display()))
}

/// The metrics listener on `host_port`.
pub(super) async fn bind_metrics(host_port: &str) -> anyhow::Result<TcpListener> {
    bind_tcp(
        host_port,
        "metrics address",
        "serve metrics on",
        "--metrics-listen",
    )
    .await
}

/// The preview proxy's listener on `host_port` (`--preview-listen`).
pub(super) async fn bind_preview(host_port: &str) -> anyhow::Result<TcpListener> {
    bind_tcp(
        host_port,
        "preview address",
        "serve previews on",
        "--preview-listen",
    )
    .await
}

/// A TCP listener on `host_port` (the `what` of the settings); failures say
/// that the server cannot `doing` there and which `flag` picks another.
async fn bind_tcp(
    host_port: &str,
    what: &str,
    doing: &str,
    flag: &str,
) -> anyhow::Result<TcpListener> {
    let addr = tokio::net::lookup_host(host_port)
        .await
        .with_context(|| format!("cannot resolve the {what} {host_port}"))?
        .next()
        .with_context(|| format!("the {what} {host_port} resolves to nothing"))?;
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot {doing} {addr}; is another server using it? pick another with {flag}")
    })
}
