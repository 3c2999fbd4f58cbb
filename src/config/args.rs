//! [`ServeArgs`]: the one shape of `paddock serve`'s settings. clap reads it
//! from flags and `PADDOCK_*` variables, serde from the TOML file named by
//! `--config`; a file key is its field's name, which is the long flag with
//! `_` for `-`. Every field is optional, so that an unset flag falls
//! through to the file and an unset key to the default
//! (see `ServerConfig::resolve`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Settings of `paddock serve`.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
pub struct ServeArgs {
    /// Read settings from this TOML file. Its keys are the long flag names
    /// with '_' for '-' (listen, data_dir, quota_commands, ...), plus
    /// [tenant_quotas.NAME] tables of quota_* keys for one tenant. Flags
    /// and PADDOCK_* variables override it.
    #[arg(long, env = "PADDOCK_CONFIG", value_name = "FILE")]
    #[serde(skip)]
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
    #[arg(
        long,
        env = "PADDOCK_OPEN_REFLECTION",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub open_reflection: Option<bool>,

    /// Also serve gRPC-Web (over HTTP/1.1 and HTTP/2), so that browsers
    /// can call Paddock directly. gRPC-Web carries no client streams: Exec,
    /// Upload and UploadArchive still need gRPC.
    #[arg(
        long,
        env = "PADDOCK_GRPC_WEB",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub grpc_web: Option<bool>,

    /// With --grpc-web, the web origins whose pages may call the server
    /// from another origin (CORS), comma-separated, such as
    /// https://ide.example.com; "*" allows any page on the web [default:
    /// none, so browsers refuse cross-origin calls].
    #[arg(
        long,
        env = "PADDOCK_GRPC_WEB_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    pub grpc_web_origins: Option<Vec<String>>,

    /// Serve Prometheus metrics (OpenMetrics text) over plain HTTP at
    /// http://ADDR/metrics, on a listener of their own: HOST:PORT, such as
    /// 0.0.0.0:9090. Anyone who reaches it reads them, with no API key
    /// [default: off].
    #[arg(long, env = "PADDOCK_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Export traces over OTLP/gRPC to this collector, such as
    /// http://otel-collector:4317 [default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    /// else $OTEL_EXPORTER_OTLP_ENDPOINT, else no traces]. OTEL_SERVICE_NAME
    /// and OTEL_RESOURCE_ATTRIBUTES name the service (default "paddock").
    #[arg(long, env = "PADDOCK_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// An API key (`pdk_` and 64 hex digits) the server adds for
    /// --bootstrap-tenant when its store does not know it, so that a new
    /// deployment can be used at once; a revoked one stays revoked. Best
    /// given through the environment from a secret store.
    #[arg(
        long,
        env = "PADDOCK_BOOTSTRAP_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub bootstrap_api_key: Option<String>,

    /// The tenant of --bootstrap-api-key [default: default].
    #[arg(long, env = "PADDOCK_BOOTSTRAP_TENANT", value_name = "TENANT")]
    pub bootstrap_tenant: Option<String>,

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

    /// Every tenant's quotas.
    #[command(flatten)]
    #[serde(flatten)]
    pub quota: QuotaArgs,

    /// One tenant's quotas, field by field over every tenant's: the config
    /// file's [tenant_quotas.NAME] tables (no flag).
    #[arg(skip)]
    pub tenant_quotas: Option<BTreeMap<String, QuotaArgs>>,

    /// The provider for requests that name none: "auto" (docker when the
    /// engine answers at start-up and the agent binary is static, else
    /// process), "docker", "kubernetes" or "process" [default: auto].
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

    /// The CPU limit of sandboxes whose request sets none, in thousandths of
    /// a core, on providers that enforce limits; capped by a tenant's
    /// quota_max_cpu_millis; 0 for none [default: 1000].
    #[arg(long, env = "PADDOCK_DEFAULT_CPU_MILLIS", value_name = "MILLIS")]
    pub default_cpu_millis: Option<u64>,

    /// The memory limit of sandboxes whose request sets none, such as 512MiB,
    /// on providers that enforce limits; capped by a tenant's
    /// quota_max_memory; 0 for none [default: 1GiB].
    #[arg(long, env = "PADDOCK_DEFAULT_MEMORY", value_name = "BYTES")]
    pub default_memory: Option<String>,

    /// The most processes and threads at once in sandboxes whose request
    /// sets no limit, on providers that enforce limits; 0 for none
    /// [default: 1024].
    #[arg(long, env = "PADDOCK_DEFAULT_PIDS", value_name = "N")]
    pub default_pids: Option<u64>,

    /// How often expired and idle sandboxes are looked for [default: 5s].
    #[arg(long, env = "PADDOCK_REAP_INTERVAL", value_name = "DURATION")]
    pub reap_interval: Option<String>,

    /// How long the reaper's lease lasts without renewal. Of the servers
    /// sharing a database, the holder runs the reaper and applies engine
    /// events; when it dies or hangs, another takes over within this plus a
    /// third of it [default: 10s].
    #[arg(long, env = "PADDOCK_REAPER_LEASE_TTL", value_name = "DURATION")]
    pub reaper_lease_ttl: Option<String>,

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

    /// The container runtime of Docker sandboxes whose request names none,
    /// such as "runsc" for gVisor; it must be registered with the engine
    /// [default: the engine's default runtime].
    #[arg(long, env = "PADDOCK_DOCKER_RUNTIME", value_name = "NAME")]
    pub docker_runtime: Option<String>,

    /// Other runtimes (comma-separated) a request may name in `runtime`, of
    /// those registered with the engine [default: none but the default].
    #[arg(
        long,
        env = "PADDOCK_DOCKER_RUNTIMES",
        value_delimiter = ',',
        value_name = "NAMES"
    )]
    pub docker_runtimes: Option<Vec<String>>,

    /// The statically linked `paddock` binary run as the agent inside Docker
    /// sandboxes (see scripts/build-static-agent) [default: the agent
    /// binary].
    #[arg(long, env = "PADDOCK_DOCKER_AGENT_BINARY", value_name = "FILE")]
    pub docker_agent_binary: Option<PathBuf>,

    /// The Kubernetes provider's settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub kube: super::kubernetes::KubeArgs,

    /// The preview proxy's settings.
    #[command(flatten)]
    #[serde(flatten)]
    pub preview: super::preview::PreviewArgs,

    /// Let requests ask for NETWORK_MODE_BRIDGE: an open network on which a
    /// sandbox reaches other sandboxes, this server and every service on the
    /// host. Unsafe for untrusted code [default: false].
    #[arg(
        long,
        env = "PADDOCK_ALLOW_BRIDGE_NETWORK",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub allow_bridge_network: Option<bool>,

    /// IPv4 ranges (CIDR, comma-separated) that NETWORK_MODE_EGRESS sandboxes
    /// may not reach, besides the host itself and other sandboxes, which
    /// they never reach [default: every private, shared, link-local,
    /// loopback, multicast and reserved range].
    #[arg(
        long,
        env = "PADDOCK_EGRESS_BLOCKED_RANGES",
        value_delimiter = ',',
        value_name = "CIDRS"
    )]
    pub egress_blocked_ranges: Option<Vec<String>>,

    /// DNS servers (IP or IP:PORT, comma-separated) that resolve the allowed
    /// names of NETWORK_MODE_ALLOW_LIST sandboxes, whose DNS this server
    /// answers itself [default: the nameservers of the host's
    /// /etc/resolv.conf].
    #[arg(
        long,
        env = "PADDOCK_ALLOW_LIST_DNS",
        value_delimiter = ',',
        value_name = "ADDRS"
    )]
    pub allow_list_dns: Option<Vec<String>>,

    /// The most commands running at once in one sandbox [default: 1024].
    #[arg(long, env = "PADDOCK_MAX_COMMANDS_PER_SANDBOX", value_name = "N")]
    pub max_commands_per_sandbox: Option<usize>,

    /// The most Exec streams and RunCommand calls in flight on this server
    /// [default: 4096].
    #[arg(long, env = "PADDOCK_MAX_COMMANDS", value_name = "N")]
    pub max_commands: Option<usize>,

    /// The output each command keeps in its log on the sandbox's disk, such
    /// as 64MiB: at least its newest that many bytes (the disk may hold an
    /// eighth more); older output is dropped [default: 64MiB].
    #[arg(long, env = "PADDOCK_COMMAND_OUTPUT_BUDGET", value_name = "BYTES")]
    pub command_output_budget: Option<String>,
}

/// Quotas: every tenant's as flags and top-level file keys, one tenant's in
/// the file's `[tenant_quotas.NAME]` tables, with the same names.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaArgs {
    /// Quota of every tenant: sandboxes not STOPPED, FAILED or DELETED at
    /// once [default: unlimited].
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

    /// Quota of every tenant: what its NETWORK_MODE_ALLOW_LIST sandboxes may
    /// allow, comma-separated domains, "*." wildcards and IPv4 ranges; each
    /// entry of a request's allowed_hosts must fall within one [default:
    /// anything outside the blocked ranges].
    #[arg(
        long,
        env = "PADDOCK_QUOTA_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOSTS"
    )]
    pub quota_allowed_hosts: Option<Vec<String>>,
}

/// The file keys that name no flag.
const FILE_ONLY_KEYS: [&str; 1] = ["tenant_quotas"];

impl ServeArgs {
    /// These settings over the configuration file's, when `--config` names
    /// one: a setting given here wins over the file's. Fails naming the
    /// file, and the key, when the file cannot be read, holds a key that is
    /// no setting, or a value of the wrong type.
    pub fn over_config_file(self) -> anyhow::Result<Self> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let file = read_file(&path)?;
        let invalid = || format!("config file {} is invalid", path.display());
        let mut layered = toml::Table::try_from(&file).with_context(invalid)?;
        layered.extend(toml::Table::try_from(&self).with_context(invalid)?);
        let mut merged: Self = layered.try_into().with_context(invalid)?;
        merged.config = Some(path);
        Ok(merged)
    }
}

/// The settings in the TOML file `path`, checked key by key.
fn read_file(path: &Path) -> anyhow::Result<ServeArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("config file {} is invalid", path.display()))?;
    let known = file_keys();
    if let Some(unknown) = table.keys().find(|key| !known.contains(key.as_str())) {
        bail!(
            "config file {}: {unknown:?} is not a setting; the keys are the long flags of \
             `paddock serve --help` with '_' for '-' (and [tenant_quotas.NAME] tables)",
            path.display()
        );
    }
    toml::from_str(&text).with_context(|| format!("config file {} is invalid", path.display()))
}

/// Every key the configuration file may hold: the flags' names (clap's ids
/// are the field names) but `config`, and the file-only ones.
fn file_keys() -> BTreeSet<String> {
    use clap::Args;
    ServeArgs::augment_args(clap::Command::new("serve"))
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .filter(|id| id != "config")
        .chain(FILE_ONLY_KEYS.map(str::to_owned))
        .chain(super::kubernetes::FILE_ONLY_KEYS.map(str::to_owned))
        .collect()
}
