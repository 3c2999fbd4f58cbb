//! The server's TLS: rustls with the certificate and key read from PEM files
//! and read again when they change (a renewed certificate needs no restart),
//! and client certificates required when a client CA is given (mutual TLS).
//!
//! Each connection is accepted with the configuration current at its
//! handshake; open connections keep theirs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server's TLS material lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these
    /// CAs (PEM).
    pub client_ca: Option<PathBuf>,
}

/// The contents of the files, as last read: a change to any of them makes a
/// new configuration.
#[derive(Debug, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Contents {
    fn read(files: &TlsFiles) -> anyhow::Result<Self> {
        let read = |path: &Path, what: &str| {
            std::fs::read(path)
                .with_context(|| format!("cannot read the TLS {what} {}", path.display()))
        };
        Ok(Self {
            cert: read(&files.cert, "certificate")?,
            key: read(&files.key, "private key")?,
            client_ca: files
                .client_ca
                .as_deref()
                .map(|path| read(path, "client CA"))
                .transpose()?,
        })
    }

    fn server_config(&self, files: &TlsFiles) -> anyhow::Result<ServerConfig> {
        let certs = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{} is not a PEM certificate chain", files.cert.display()))?;
        if certs.is_empty() {
            bail!("{} holds no certificate", files.cert.display());
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .with_context(|| format!("{} holds no PEM private key", files.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("the TLS library refused its own defaults")?;
        let builder = match (&self.client_ca, &files.client_ca) {
            (Some(pem), Some(path)) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.with_context(|| {
                        format!("{} is not a PEM certificate list", path.display())
                    })?;
                    roots.add(cert).with_context(|| {
                        format!("{} holds a certificate that is not a CA", path.display())
                    })?;
                }
                if roots.is_empty() {
                    bail!("{} holds no certificate", path.display());
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .with_context(|| {
                            format!("cannot verify clients with {}", path.display())
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key).with_context(|| {
            format!(
                "the key {} does not fit the certificate {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The TLS configuration in force, swapped when the files change.
#[derive(Clone)]
pub struct ReloadingTls {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl ReloadingTls {
    /// Reads the files; fails with a sentence naming the file at fault.
    /// Then, every `interval`, reads them again and, when they changed and
    /// make a valid configuration, uses it for new connections; a change
    /// that does not (a key written before its certificate) is logged and
    /// the configuration in force kept until the next change.
    pub fn load(files: TlsFiles, interval: Duration) -> anyhow::Result<Self> {
        let contents = Contents::read(&files)?;
        let config = contents.server_config(&files)?;
        let tls = Self {
            current: Arc::new(RwLock::new(Arc::new(config))),
        };
        let current = Arc::downgrade(&tls.current);
        tokio::spawn(async move {
            let mut last = contents;
            loop {
                tokio::time::sleep(interval).await;
                let Some(current) = current.upgrade() else {
                    return;
                };
                let contents = match Contents::read(&files) {
                    Ok(contents) if contents != last => contents,
                    Ok(_) => continue,
                    Err(error) => {
                        warn!(error = %format!("{error:#}"), "TLS files unreadable; keeping the certificate in use");
                        continue;
                    }
                };
                match contents.server_config(&files) {
                    Ok(config) => {
                        *current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
                        info!(cert = %files.cert.display(), "TLS files changed: new connections use the new certificate");
                    }
                    Err(error) => warn!(
                        error = %format!("{error:#}"),
                        "TLS files changed but do not make a valid configuration; keeping the certificate in use"
                    ),
                }
                last = contents;
            }
        });
        Ok(tls)
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Accepts TCP connections and completes their TLS handshakes concurrently
/// (a slow or plaintext client holds up no one), yielding the established
/// ones. Failed handshakes are logged at debug level and dropped. Ends when
/// the receiving side is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: ReloadingTls,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors and the like: pause, not spin.
                        warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                match handshake(acceptor, tcp, peer).await {
                    Ok(stream) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Err(reason) => debug!(%peer, %reason, "TLS handshake failed"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Result<TlsStream<TcpStream>, String> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "{peer} did not finish within {HANDSHAKE_TIMEOUT:?}"
        )),
    }
}
