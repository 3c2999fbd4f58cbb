//! The command-line client: how `paddock sandbox …` and `paddock exec` reach
//! a server (plaintext, TLS, mutual TLS or a Unix socket, with an API key),
//! and the commands themselves.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub mod commands;
pub mod cp;
pub mod logs;
pub mod mcp;
pub mod output;
pub mod port_forward;
pub mod run;
mod session;
pub mod template;
mod terminal;
pub mod transfer;
pub mod watch;

/// How the client reaches the server; every client command takes these.
#[derive(Clone, Default, clap::Args, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientArgs {
    /// The server: http://HOST:PORT, https://HOST:PORT (TLS), HOST:PORT
    /// (TLS when a --tls-* file is given, else plaintext) or unix:PATH
    /// [default: the config file's `server`, else http://127.0.0.1:50051].
    #[arg(long, env = "PADDOCK_ADDR", value_name = "URL", global = true)]
    pub server: Option<String>,

    /// Read unset client settings from this TOML file: its keys are the
    /// flags' names with '_' for '-' (server, api_key, tls_ca, ...)
    /// [default: $XDG_CONFIG_HOME/paddock/client.toml, else
    /// ~/.config/paddock/client.toml, when it exists].
    #[arg(
        long,
        env = "PADDOCK_CLIENT_CONFIG",
        value_name = "FILE",
        global = true
    )]
    #[serde(skip)]
    pub client_config: Option<PathBuf>,

    /// The API key, sent as `authorization: Bearer <key>`.
    #[arg(
        long,
        env = "PADDOCK_API_KEY",
        value_name = "KEY",
        hide_env_values = true,
        global = true
    )]
    pub api_key: Option<String>,

    /// Trust servers whose certificate this PEM CA signed, instead of the
    /// system's roots.
    #[arg(long, env = "PADDOCK_TLS_CA", value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,

    /// Mutual TLS: present this PEM client certificate (with
    /// --tls-client-key).
    #[arg(
        long,
        env = "PADDOCK_TLS_CLIENT_CERT",
        value_name = "FILE",
        global = true
    )]
    pub tls_client_cert: Option<PathBuf>,

    /// The PEM private key of --tls-client-cert.
    #[arg(
        long,
        env = "PADDOCK_TLS_CLIENT_KEY",
        value_name = "FILE",
        global = true
    )]
    pub tls_client_key: Option<PathBuf>,

    /// The name the server's certificate must carry [default: the server's
    /// host].
    #[arg(
        long,
        env = "PADDOCK_TLS_SERVER_NAME",
        value_name = "NAME",
        global = true
    )]
    pub tls_server_name: Option<String>,
}

impl std::fmt::Debug for ClientArgs {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientArgs")
            .field("server", &self.server)
            .field("client_config", &self.client_config)
            .field("api_key", &self.api_key.as_ref().map(|_| "<hidden>"))
            .field("tls_ca", &self.tls_ca)
            .field("tls_client_cert", &self.tls_client_cert)
            .field("tls_client_key", &self.tls_client_key)
            .field("tls_server_name", &self.tls_server_name)
            .finish()
    }
}

/// A channel whose calls carry the API key.
pub type Connection = InterceptedService<Channel, BearerKey>;

/// Adds `authorization: Bearer <key>` to every call, when there is a key.
#[derive(Clone)]
pub struct BearerKey(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl ClientArgs {
    fn uses_tls_files(&self) -> bool {
        self.tls_ca.is_some() || self.tls_client_cert.is_some() || self.tls_client_key.is_some()
    }

    /// These settings, each unset one taken from the client config file.
    fn with_config_file(&self) -> anyhow::Result<Self> {
        let (path, named) = match &self.client_config {
            Some(path) => (path.clone(), true),
            None => match default_client_config() {
                Some(path) => (path, false),
                None => return Ok(self.clone()),
            },
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => {
                return Ok(self.clone());
            }
            Err(e) => bail!("cannot read the client config {}: {e}", path.display()),
        };
        let file: Self = toml::from_str(&text)
            .with_context(|| format!("the client config {} is not valid", path.display()))?;
        Ok(Self {
            server: self.server.clone().or(file.server),
            client_config: Some(path),
            api_key: self.api_key.clone().or(file.api_key),
            tls_ca: self.tls_ca.clone().or(file.tls_ca),
            tls_client_cert: self.tls_client_cert.clone().or(file.tls_client_cert),
            tls_client_key: self.tls_client_key.clone().or(file.tls_client_key),
            tls_server_name: self.tls_server_name.clone().or(file.tls_server_name),
        })
    }

    /// The server address, as given or the default.
    fn server(&self) -> &str {
        self.server.as_deref().unwrap_or(DEFAULT_SERVER)
    }

    /// Connects to the server, or says why not.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        self.with_config_file()?.connect_as_given().await
    }

    async fn connect_as_given(&self) -> anyhow::Result<Connection> {
        let key = self
            .api_key
            .as_deref()
            .map(|key| {
                format!("Bearer {}", key.trim())
                    .parse::<MetadataValue<Ascii>>()
                    .context("the API key holds characters a header cannot carry")
            })
            .transpose()?;
        let channel = if let Some(path) = self.server().strip_prefix("unix:") {
            if self.uses_tls_files() {
                bail!("TLS is for TCP servers; unix:{path} needs no --tls-* files");
            }
            unix_channel(PathBuf::from(path)).await?
        } else {
            self.tcp_channel().await?
        };
        Ok(InterceptedService::new(channel, BearerKey(key)))
    }

    async fn tcp_channel(&self) -> anyhow::Result<Channel> {
        let server = self.server();
        let url = if server.contains("://") {
            server.to_owned()
        } else if self.uses_tls_files() {
            format!("https://{server}")
        } else {
            format!("http://{server}")
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .with_context(|| format!("{server:?} is not a server address"))?
            .connect_timeout(Duration::from_secs(10));
        match endpoint.uri().scheme_str() {
            Some("https") => endpoint = endpoint.tls_config(self.tls_config()?)?,
            Some("http") if self.uses_tls_files() => bail!(
                "--tls-* files were given but the server address {url} is plaintext; use https://"
            ),
            Some("http") => {}
            _ => bail!("the server address {url} must start with http://, https:// or unix:"),
        }
        endpoint.connect().await.map_err(|error| {
            anyhow::anyhow!("cannot reach the server at {url}: {}", source_chain(&error))
        })
    }

    fn tls_config(&self) -> anyhow::Result<ClientTlsConfig> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path)
                .with_context(|| format!("cannot read the {what} {}", path.display()))
        };
        let mut tls = ClientTlsConfig::new();
        tls = match &self.tls_ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?)),
            None => tls.with_native_roots(),
        };
        match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => {
                tls = tls.identity(Identity::from_pem(
                    read(cert, "client certificate")?,
                    read(key, "client key")?,
                ));
            }
            (None, None) => {}
            _ => bail!("mutual TLS needs both --tls-client-cert and --tls-client-key"),
        }
        if let Some(name) = &self.tls_server_name {
            tls = tls.domain_name(name.clone());
        }
        Ok(tls)
    }
}

/// Where a client connects when nothing says otherwise.
const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// The client config file read when none is named.
fn default_client_config() -> Option<PathBuf> {
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config_home.join("paddock/client.toml"))
}

async fn unix_channel(path: PathBuf) -> anyhow::Result<Channel> {
    let shown = path.display().to_string();
    // The URI is required by the API but unused by the connector.
    Endpoint::from_static("http://paddock.invalid")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "cannot reach the server at unix:{shown}: {}",
                source_chain(&error)
            )
        })
}

/// An error and its causes, joined: transport errors say little at the top.
fn source_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}
