//! Server configuration: flags > `PADDOCK_*` environment > TOML file >
//! defaults.
//!
//! Flags and environment variables are read by clap into [`ServeArgs`], whose
//! fields are all optional so that an unset flag falls through to the file;
//! [`ServerConfig::resolve`] then applies the file and the defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::api::auth::AuthMode;
use crate::provider::AgentLaunch;
use crate::sandbox::LifecycleConfig;
use crate::sandbox::quota::{Quota, Quotas};
use crate::telemetry::LogFormat;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Settings of `paddock serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Read settings from this TOML file. Its keys are the long flag names
    /// with '_' for '-' (listen, data_dir, database_url, ...). Flags and
    /// PADDOCK_* variables override it.
    #[arg(long, env = "PADDOCK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where to listen: HOST:PORT, or unix:PATH for a Unix socket
    /// [default: 127.0.0.1:50051].
    #[arg(long, env = "PADDOCK_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// The directory for the SQLite database and the process provider's
    /// sandboxes [default: $XDG_DATA_HOME/paddock, else ~/.local/share/paddock,
    /// else ./paddock-data].
    #[arg(long, env = "PADDOCK_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Keep state in this database instead of the SQLite file in the data
    /// directory: sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DB.
    #[arg(long, env = "PADDOCK_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,

    /// How callers prove who they are: "keys" (every call but health needs
    /// `authorization: Bearer <API key>`; make keys with `paddock keys
    /// create`) or "none" (every caller is the default tenant; only allowed
    /// when listening on loopback or a Unix socket) [default: none on
    /// loopback and Unix sockets, else keys].
    #[arg(long, env = "PADDOCK_AUTH", value_name = "MODE")]
    pub auth: Option<String>,

    /// With --auth keys, let reflection (grpcurl list/describe) answer
    /// without a key.
    #[arg(long, env = "PADDOCK_OPEN_REFLECTION")]
    pub open_reflection: bool,

    /// The most calls one API key may start per second (Exec and other
    /// streams count once, when they open); calls over it are
    /// RESOURCE_EXHAUSTED. Up to this many may come at once after a quiet
    /// second. 0 for unlimited [default: 1000].
    #[arg(long, env = "PADDOCK_KEY_RATE_LIMIT", value_name = "CALLS_PER_SECOND")]
    pub key_rate_limit: Option<u32>,

    /// Serve TLS with this PEM certificate chain (leaf first); needs
    /// --tls-key. The files are read again when they change, so a renewed
    /// certificate needs no restart.
    #[arg(long, env = "PADDOCK_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "PADDOCK_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: only clients presenting a certificate signed by a CA in
    /// this PEM file may connect (API keys are still asked for with --auth
    /// keys).
    #[arg(long, env = "PADDOCK_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// How often the TLS files are checked for changes [default: 10s].
    #[arg(long, env = "PADDOCK_TLS_RELOAD_INTERVAL", value_name = "DURATION")]
    pub tls_reload_interval: Option<String>,

    /// Quota of every tenant: sandboxes not STOPPED, FAILED or DELETED at
    /// once. The config file's [quotas.tenants.NAME] tables override the
    /// quotas for one tenant [default: unlimited].
    #[arg(long, env = "PADDOCK_QUOTA_RUNNING_SANDBOXES", value_name = "N")]
    pub quota_running_sandboxes: Option<u64>,

    /// Quota of every tenant: its Exec streams and RunCommand calls in
    /// flight on this server [default: unlimited].
    #[arg(long, env = "PADDOCK_QUOTA_COMMANDS", value_name = "N")]
    pub quota_commands: Option<u64>,

    /// Quota of every tenant: the most CPU one sandbox may ask for, in
    /// thousandths of a core [default: unlimited].
    #[arg(long, env = "PADDOCK_QUOTA_MAX_CPU_MILLIS", value_name = "N")]
    pub quota_max_cpu_millis: Option<u64>,

    /// Quota of every tenant: the most memory one sandbox may ask for, such
    /// as 4GiB [default: unlimited].
    #[arg(long, env = "PADDOCK_QUOTA_MAX_MEMORY", value_name = "BYTES")]
    pub quota_max_memory: Option<String>,

    /// The provider for requests that name none: "auto" (docker when the
    /// engine answers at start-up and the agent binary is static, else
    /// process), "docker" or "process" [default: auto].
    #[arg(long, env = "PADDOCK_PROVIDER", value_name = "NAME")]
    pub provider: Option<String>,

    /// The lifetime of sandboxes whose request sets none, such as 30m or 2h;
    /// "none" for unlimited [default: 1h].
    #[arg(long, env = "PADDOCK_DEFAULT_TIMEOUT", value_name = "DURATION")]
    pub default_timeout: Option<String>,

    /// The longest lifetime a request may ask for; "none" for unlimited
    /// [default: 24h].
    #[arg(long, env = "PADDOCK_MAX_TIMEOUT", value_name = "DURATION")]
    pub max_timeout: Option<String>,

    /// The deadline of each call to a provider [default: 2m].
    #[arg(long, env = "PADDOCK_PROVIDER_CALL_TIMEOUT", value_name = "DURATION")]
    pub provider_call_timeout: Option<String>,

    /// How often expired and idle sandboxes are looked for [default: 5s].
    #[arg(long, env = "PADDOCK_REAP_INTERVAL", value_name = "DURATION")]
    pub reap_interval: Option<String>,

    /// How long shutdown waits for open calls and streams before closing
    /// them [default: 30s].
    #[arg(long, env = "PADDOCK_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<String>,

    /// Log format: "human" or "json" [default: human].
    #[arg(long, env = "PADDOCK_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Which logs to write, in RUST_LOG syntax such as "info" or
    /// "paddock=debug,info" [default: info].
    #[arg(long, env = "PADDOCK_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// The `paddock` binary that runs sandbox agents (`paddock agent`)
    /// [default: this program].
    #[arg(long, env = "PADDOCK_AGENT_BINARY", value_name = "FILE")]
    pub agent_binary: Option<PathBuf>,

    /// The Docker engine: unix:///PATH or tcp://HOST:PORT [default:
    /// $DOCKER_HOST, else unix:///var/run/docker.sock].
    #[arg(long, env = "PADDOCK_DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,

    /// A directory holding ca.pem, cert.pem and key.pem: speak TLS to a TCP
    /// Docker engine with them.
    #[arg(long, env = "PADDOCK_DOCKER_TLS_DIR", value_name = "DIR")]
    pub docker_tls_dir: Option<PathBuf>,

    /// The image of Docker sandboxes whose request names none [default: none,
    /// requests must name one].
    #[arg(long, env = "PADDOCK_DOCKER_DEFAULT_IMAGE", value_name = "IMAGE")]
    pub docker_default_image: Option<String>,

    /// The longest an image pull may take [default: 10m].
    #[arg(long, env = "PADDOCK_DOCKER_PULL_TIMEOUT", value_name = "DURATION")]
    pub docker_pull_timeout: Option<String>,

    /// How the server reaches agents in containers: "auto" (straight to the
    /// agent's socket when the engine is local and its volumes are visible
    /// here, else an exec bridge through the engine) or "bridge" (always the
    /// bridge, as for a remote engine) [default: auto].
    #[arg(long, env = "PADDOCK_DOCKER_AGENT_TRANSPORT", value_name = "MODE")]
    pub docker_agent_transport: Option<String>,

    /// The statically linked `paddock` binary run as the agent inside Docker
    /// sandboxes (see scripts/build-static-agent) [default: the agent
    /// binary].
    #[arg(long, env = "PADDOCK_DOCKER_AGENT_BINARY", value_name = "FILE")]
    pub docker_agent_binary: Option<PathBuf>,

    /// The most commands running at once in one sandbox [default: 1024].
    #[arg(long, env = "PADDOCK_MAX_COMMANDS_PER_SANDBOX", value_name = "N")]
    pub max_commands_per_sandbox: Option<usize>,

    /// The most Exec streams and RunCommand calls in flight on this server
    /// [default: 4096].
    #[arg(long, env = "PADDOCK_MAX_COMMANDS", value_name = "N")]
    pub max_commands: Option<usize>,

    /// The output each command keeps in its log on the sandbox's disk, such
    /// as 64MiB; older output is dropped past it [default: 64MiB].
    #[arg(long, env = "PADDOCK_COMMAND_OUTPUT_BUDGET", value_name = "BYTES")]
    pub command_output_budget: Option<String>,
}

/// The keys of the TOML configuration file; all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    auth: Option<String>,
    open_reflection: Option<bool>,
    key_rate_limit: Option<u32>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    tls_reload_interval: Option<String>,
    quotas: Option<QuotasFile>,
    provider: Option<String>,
    default_timeout: Option<String>,
    max_timeout: Option<String>,
    provider_call_timeout: Option<String>,
    reap_interval: Option<String>,
    shutdown_grace: Option<String>,
    log_format: Option<String>,
    log: Option<String>,
    agent_binary: Option<PathBuf>,
    docker_host: Option<String>,
    docker_tls_dir: Option<PathBuf>,
    docker_default_image: Option<String>,
    docker_pull_timeout: Option<String>,
    docker_agent_binary: Option<PathBuf>,
    docker_agent_transport: Option<String>,
    max_commands_per_sandbox: Option<usize>,
    max_commands: Option<usize>,
    command_output_budget: Option<String>,
}

/// The `[quotas]` table of the configuration file: every tenant's quotas,
/// and `[quotas.tenants.NAME]` tables for tenants with their own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotasFile {
    running_sandboxes: Option<u64>,
    commands: Option<u64>,
    max_cpu_millis: Option<u64>,
    max_memory_bytes: Option<u64>,
    #[serde(default)]
    tenants: std::collections::BTreeMap<String, Quota>,
}

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP `host:port`, resolved when binding.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(host_port) => f.write_str(host_port),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl ListenAddr {
    /// Parses `host:port` or `unix:PATH`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if let Some(path) = text.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                bail!("listen address {text:?} names no socket path");
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        match text.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(text.to_owned()))
            }
            _ => bail!("listen address {text:?} is neither HOST:PORT nor unix:PATH"),
        }
    }

    /// Whether only this machine can reach the address: a Unix socket, or a
    /// loopback host (`localhost`, 127.0.0.0/8, `[::1]`). The server checks
    /// the addresses it actually binds again.
    pub fn is_local(&self) -> bool {
        match self {
            Self::Unix(_) => true,
            Self::Tcp(text) => {
                let host = text
                    .rsplit_once(':')
                    .map_or(text.as_str(), |(host, _)| host);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                host.eq_ignore_ascii_case("localhost")
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

/// Which provider serves requests that name none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderChoice {
    /// The Docker engine when it answers, else process.
    Auto,
    /// The Docker engine.
    Docker,
    /// The process provider.
    Process,
}

/// How to use a Docker engine.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The engine's address; `None` means `DOCKER_HOST` or the default socket.
    pub host: Option<String>,
    /// TLS files for a TCP engine.
    pub tls_dir: Option<PathBuf>,
    /// The image of sandboxes whose request names none.
    pub default_image: Option<String>,
    /// The longest an image pull may take.
    pub pull_timeout: Duration,
    /// The static agent binary.
    pub agent_binary: PathBuf,
    /// How to reach agents.
    pub transport: crate::provider::AgentTransport,
}

/// The resolved server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: ListenAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The state database; `None` means the SQLite file in the data directory.
    pub database_url: Option<String>,
    /// How callers are authenticated.
    pub auth: AuthMode,
    /// Whether reflection answers without a key.
    pub open_reflection: bool,
    /// Calls per second per API key; `None` for unlimited.
    pub key_rate_limit: Option<std::num::NonZeroU32>,
    /// The TLS files, when serving TLS.
    pub tls: Option<crate::tls::TlsFiles>,
    /// How often the TLS files are checked for changes.
    pub tls_reload_interval: Duration,
    /// The default provider.
    pub provider: ProviderChoice,
    /// Lifecycle settings.
    pub lifecycle: LifecycleConfig,
    /// How often the reaper runs.
    pub reap_interval: Duration,
    /// How long shutdown waits for open work.
    pub shutdown_grace: Duration,
    /// The log format.
    pub log_format: LogFormat,
    /// The log filter.
    pub log_filter: String,
    /// How sandbox agents run.
    pub agent: AgentLaunch,
    /// How to use a Docker engine.
    pub docker: DockerConfig,
}

impl ServerConfig {
    /// Applies the config file named by `args` (if any) under `args`, then the
    /// defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let lifecycle_defaults = LifecycleConfig::default();
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let provider = match args.provider.or(file.provider).as_deref().unwrap_or("auto") {
            "auto" => ProviderChoice::Auto,
            "docker" => ProviderChoice::Docker,
            "process" => ProviderChoice::Process,
            other => bail!("provider {other:?} is unknown; use auto, docker or process"),
        };
        let agent_binary = match args.agent_binary.or(file.agent_binary) {
            Some(path) => path,
            None => {
                std::env::current_exe().context("cannot find this program to run sandbox agents")?
            }
        };
        let docker_default_image = args.docker_default_image.or(file.docker_default_image);
        if let Some(image) = &docker_default_image {
            crate::sandbox::rules::check_image("docker_default_image", image)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let docker = DockerConfig {
            host: args.docker_host.or(file.docker_host),
            tls_dir: args.docker_tls_dir.or(file.docker_tls_dir),
            default_image: docker_default_image,
            pull_timeout: duration(
                "docker_pull_timeout",
                args.docker_pull_timeout.or(file.docker_pull_timeout),
                Duration::from_secs(600),
            )?,
            agent_binary: args
                .docker_agent_binary
                .or(file.docker_agent_binary)
                .unwrap_or_else(|| agent_binary.clone()),
            transport: match args
                .docker_agent_transport
                .or(file.docker_agent_transport)
                .as_deref()
                .unwrap_or("auto")
            {
                "auto" => crate::provider::AgentTransport::Auto,
                "bridge" => crate::provider::AgentTransport::Bridge,
                other => bail!("docker agent transport {other:?} is unknown; use auto or bridge"),
            },
        };
        let log_format = match args
            .log_format
            .or(file.log_format)
            .as_deref()
            .unwrap_or("human")
        {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => bail!("log format {other:?} is unknown; use human or json"),
        };
        let listen = ListenAddr::parse(&listen)?;
        let quotas_file = file.quotas.unwrap_or_default();
        for tenant in quotas_file.tenants.keys() {
            crate::keys::validate_tenant(tenant)
                .map_err(|e| anyhow::anyhow!("quotas.tenants: {}", e.message()))?;
        }
        let quotas = Quotas {
            default: Quota {
                running_sandboxes: args
                    .quota_running_sandboxes
                    .or(quotas_file.running_sandboxes),
                commands: args.quota_commands.or(quotas_file.commands),
                max_cpu_millis: args.quota_max_cpu_millis.or(quotas_file.max_cpu_millis),
                max_memory_bytes: match args.quota_max_memory {
                    Some(text) => Some(bytes("quota_max_memory", Some(text), 0)?),
                    None => quotas_file.max_memory_bytes,
                },
            },
            tenants: quotas_file.tenants,
        };
        let auth = match args.auth.or(file.auth).as_deref() {
            None if listen.is_local() => AuthMode::None,
            None | Some("keys") => AuthMode::Keys,
            Some("none") => AuthMode::None,
            Some(other) => bail!("auth mode {other:?} is unknown; use keys or none"),
        };
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
            args.tls_client_ca.or(file.tls_client_ca),
        ) {
            (None, None, None) => None,
            (Some(cert), Some(key), client_ca) => Some(crate::tls::TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, _, _) => bail!("TLS needs a certificate: give --tls-cert with --tls-key"),
            (Some(_), None, _) => bail!("TLS needs the certificate's private key: give --tls-key"),
        };
        if tls.is_some() && matches!(listen, ListenAddr::Unix(_)) {
            bail!(
                "TLS is for TCP listeners; a Unix socket is guarded by its file permissions: \
                 drop the --tls-* settings or listen on HOST:PORT"
            );
        }
        Ok(Self {
            listen,
            auth,
            open_reflection: args.open_reflection || file.open_reflection.unwrap_or(false),
            key_rate_limit: std::num::NonZeroU32::new(
                args.key_rate_limit.or(file.key_rate_limit).unwrap_or(1000),
            ),
            tls,
            tls_reload_interval: duration(
                "tls_reload_interval",
                args.tls_reload_interval.or(file.tls_reload_interval),
                Duration::from_secs(10),
            )?,
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(default_data_dir),
            database_url: args.database_url.or(file.database_url),
            provider,
            lifecycle: LifecycleConfig {
                default_timeout: optional_duration(
                    "default_timeout",
                    args.default_timeout.or(file.default_timeout),
                    lifecycle_defaults.default_timeout,
                )?,
                max_timeout: optional_duration(
                    "max_timeout",
                    args.max_timeout.or(file.max_timeout),
                    lifecycle_defaults.max_timeout,
                )?,
                provider_call_timeout: duration(
                    "provider_call_timeout",
                    args.provider_call_timeout.or(file.provider_call_timeout),
                    lifecycle_defaults.provider_call_timeout,
                )?,
                watch_poll_interval: lifecycle_defaults.watch_poll_interval,
                quotas,
                max_commands: args.max_commands.or(file.max_commands).unwrap_or(4096),
            },
            reap_interval: duration(
                "reap_interval",
                args.reap_interval.or(file.reap_interval),
                Duration::from_secs(5),
            )?,
            shutdown_grace: duration(
                "shutdown_grace",
                args.shutdown_grace.or(file.shutdown_grace),
                Duration::from_secs(30),
            )?,
            log_format,
            log_filter: args.log.or(file.log).unwrap_or_else(|| "info".to_owned()),
            agent: AgentLaunch {
                binary: agent_binary,
                max_commands: args
                    .max_commands_per_sandbox
                    .or(file.max_commands_per_sandbox)
                    .unwrap_or(1024),
                output_budget: bytes(
                    "command_output_budget",
                    args.command_output_budget.or(file.command_output_budget),
                    64 << 20,
                )?,
            },
            docker,
        })
    }

    /// The database URL in use: the configured one, or the SQLite file in
    /// the data directory.
    pub fn effective_database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            crate::store::SqlStore::sqlite_url(&self.data_dir.join("paddock.db"))
        })
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is invalid", path.display()))
}

/// `$XDG_DATA_HOME/paddock`, else `~/.local/share/paddock`, else
/// `./paddock-data`.
fn default_data_dir() -> PathBuf {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(xdg) = non_empty("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("paddock");
    }
    if let Some(home) = non_empty("HOME") {
        return PathBuf::from(home).join(".local/share/paddock");
    }
    PathBuf::from("paddock-data")
}

/// Parses a byte size such as 65536, 512KiB, 64MiB or 1GiB; at least 8 MiB,
/// so that a reader following live output never loses any.
fn bytes(name: &str, text: Option<String>, default: u64) -> anyhow::Result<u64> {
    let Some(text) = text else {
        return Ok(default);
    };
    let trimmed = text.trim();
    let (number, unit) = match trimmed.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => trimmed.split_at(at),
        None => (trimmed, ""),
    };
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => bail!("{name} {text:?} is not a size such as 64MiB or 1GiB"),
    };
    let value = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .with_context(|| format!("{name} {text:?} is not a size such as 64MiB or 1GiB"))?;
    if value < 8 << 20 {
        bail!("{name} {text:?} is below the least, 8MiB");
    }
    Ok(value)
}

fn duration(name: &str, text: Option<String>, default: Duration) -> anyhow::Result<Duration> {
    match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(&text)
            .with_context(|| format!("{name} {text:?} is not a duration such as 30s, 5m or 2h")),
    }
}

fn optional_duration(
    name: &str,
    text: Option<String>,
    default: Option<Duration>,
) -> anyhow::Result<Option<Duration>> {
    match text.as_deref() {
        None => Ok(default),
        Some("none") => Ok(None),
        Some(_) => duration(name, text, Duration::ZERO).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            ListenAddr::parse("127.0.0.1:50051").unwrap(),
            ListenAddr::Tcp("127.0.0.1:50051".into())
        );
        assert_eq!(
            ListenAddr::parse("[::1]:9").unwrap(),
            ListenAddr::Tcp("[::1]:9".into())
        );
        assert_eq!(
            ListenAddr::parse("unix:/tmp/p.sock").unwrap(),
            ListenAddr::Unix("/tmp/p.sock".into())
        );
        for bad in ["", "localhost", "host:port", ":80", "unix:"] {
            assert!(ListenAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("paddock.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\nreap_interval = \"9s\"\nmax_timeout = \"none\"\n",
        )
        .unwrap();
        let config = ServerConfig::resolve(ServeArgs {
            config: Some(file),
            listen: Some("127.0.0.1:8000".into()),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(config.listen, ListenAddr::Tcp("127.0.0.1:8000".into()));
        assert_eq!(config.reap_interval, Duration::from_secs(9));
        assert_eq!(config.lifecycle.max_timeout, None);
        assert_eq!(
            config.lifecycle.default_timeout,
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("paddock.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let err = ServerConfig::resolve(ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
    }
}
