//! Server configuration: flags > `PADDOCK_*` environment > TOML file >
//! defaults.
//!
//! Flags, variables and the file share one shape, [`ServeArgs`] (args.rs):
//! every setting is spelled once, with the same name everywhere.
//! [`ServerConfig::resolve`] layers them, then parses each setting and
//! applies its default, once. This module sits at the top, beside the
//! server: it knows every layer's settings, and nothing below imports it.

mod args;
mod docker;
mod kubernetes;
mod preview;
mod values;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

pub use args::{QuotaArgs, ServeArgs};
pub use docker::DockerConfig;
pub use kubernetes::{KubeArgs, KubernetesConfig};
pub use preview::{PreviewArgs, PreviewConfig};
pub use values::{CorsOrigins, GrpcWeb, ListenAddr};
use values::{bootstrap_key, bytes, duration, grpc_web, lease_ttl, optional_duration, size};

use crate::api::auth::AuthMode;
use crate::provider::AgentLaunch;
use crate::sandbox::quota::{Quota, Quotas};
use crate::sandbox::{LifecycleConfig, Resources};
use crate::telemetry::LogFormat;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Which provider serves requests that name none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderChoice {
    /// The Docker engine when it answers, else process.
    Auto,
    /// The Docker engine.
    Docker,
    /// The process provider.
    Process,
    /// The Kubernetes provider.
    Kubernetes,
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
    /// gRPC-Web for browsers, when it is on.
    pub grpc_web: Option<GrpcWeb>,
    /// Where to serve Prometheus metrics (HOST:PORT); `None`: nowhere.
    pub metrics_listen: Option<String>,
    /// Where spans are exported (OTLP over gRPC); `None`: nowhere.
    pub otlp_endpoint: Option<String>,
    /// The bootstrap API key and its tenant, when one is given.
    pub bootstrap_key: Option<(String, String)>,
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
    /// How long the reaper's lease lasts without renewal.
    pub reaper_lease_ttl: Duration,
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
    /// How to use a Kubernetes cluster, when the provider is asked for.
    pub kubernetes: Option<KubernetesConfig>,
    /// The preview proxy.
    pub preview: PreviewConfig,
}

impl ServerConfig {
    /// Applies the config file named by `args` (if any) under `args`, then the
    /// defaults.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let ServeArgs {
            config: _,
            listen,
            data_dir,
            database_url,
            auth,
            open_reflection,
            grpc_web: grpc_web_enabled,
            grpc_web_origins,
            metrics_listen,
            otlp_endpoint,
            bootstrap_api_key,
            bootstrap_tenant,
            key_rate_limit,
            tls_cert,
            tls_key,
            tls_client_ca,
            tls_reload_interval,
            quota,
            tenant_quotas,
            provider,
            default_timeout,
            max_timeout,
            provider_call_timeout,
            default_cpu_millis,
            default_memory,
            default_pids,
            reap_interval,
            reaper_lease_ttl,
            shutdown_grace,
            log_format,
            log,
            agent_binary,
            docker_host,
            docker_tls_dir,
            docker_default_image,
            docker_pull_timeout,
            docker_agent_transport,
            docker_agent_binary,
            kube,
            preview,
            docker_runtime,
            docker_runtimes,
            allow_bridge_network,
            egress_blocked_ranges,
            allow_list_dns,
            max_commands_per_sandbox,
            max_commands,
            command_output_budget,
        } = args.over_config_file()?;
        let lifecycle_defaults = LifecycleConfig::default();
        let listen = ListenAddr::parse(listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let provider = match provider.as_deref().unwrap_or("auto") {
            "auto" => ProviderChoice::Auto,
            "docker" => ProviderChoice::Docker,
            "process" => ProviderChoice::Process,
            "kubernetes" => ProviderChoice::Kubernetes,
            other => {
                bail!("provider {other:?} is unknown; use auto, docker, kubernetes or process")
            }
        };
        let kubernetes = kubernetes::resolve(kube, provider == ProviderChoice::Kubernetes)?;
        let agent_binary = match agent_binary {
            Some(path) => path,
            None => {
                std::env::current_exe().context("cannot find this program to run sandbox agents")?
            }
        };
        if let Some(image) = &docker_default_image {
            crate::sandbox::rules::check_image("docker_default_image", image)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let runtime_name = |name: &str| {
            crate::sandbox::rules::check_runtime("docker_runtime", name)
                .map_err(|e| anyhow::anyhow!("{e}"))
        };
        let docker_runtime = docker_runtime.filter(|name| !name.is_empty());
        if let Some(name) = &docker_runtime {
            runtime_name(name)?;
        }
        let docker_runtimes: Vec<String> = docker_runtimes
            .unwrap_or_default()
            .into_iter()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
        for name in &docker_runtimes {
            runtime_name(name)?;
        }
        let docker = DockerConfig {
            runtime: docker_runtime,
            runtimes: docker_runtimes,
            host: docker_host,
            tls_dir: docker_tls_dir,
            default_image: docker_default_image,
            pull_timeout: duration(
                "docker_pull_timeout",
                docker_pull_timeout,
                Duration::from_secs(600),
            )?,
            agent_binary: docker_agent_binary.unwrap_or_else(|| agent_binary.clone()),
            transport: match docker_agent_transport.as_deref().unwrap_or("auto") {
                "auto" => crate::provider::AgentTransport::Auto,
                "bridge" => crate::provider::AgentTransport::Bridge,
                other => bail!("docker agent transport {other:?} is unknown; use auto or bridge"),
            },
            egress_blocked: match egress_blocked_ranges {
                None => crate::sandbox::network::Ipv4Cidr::default_egress_blocked(),
                Some(ranges) => ranges
                    .iter()
                    .filter(|range| !range.trim().is_empty())
                    .map(|range| {
                        range
                            .parse()
                            .map_err(|e| anyhow::anyhow!("egress_blocked_ranges: {e}"))
                    })
                    .collect::<anyhow::Result<_>>()?,
            },
            allow_list_dns: allow_list_dns
                .unwrap_or_default()
                .iter()
                .filter(|server| !server.trim().is_empty())
                .map(|server| dns_server(server.trim()))
                .collect::<anyhow::Result<_>>()?,
        };
        let log_format = match log_format.as_deref().unwrap_or("human") {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => bail!("log format {other:?} is unknown; use human or json"),
        };
        let mut tenants = std::collections::BTreeMap::new();
        for (tenant, over) in tenant_quotas.unwrap_or_default() {
            crate::keys::validate_tenant(&tenant)
                .map_err(|e| anyhow::anyhow!("tenant_quotas: {}", e.message()))?;
            let over = quota_of(over).with_context(|| format!("tenant_quotas.{tenant}"))?;
            tenants.insert(tenant, over);
        }
        let quotas = Quotas {
            default: quota_of(quota)?,
            tenants,
        };
        let auth = match auth.as_deref() {
            None if listen.is_local() => AuthMode::None,
            None | Some("keys") => AuthMode::Keys,
            Some("none") => AuthMode::None,
            Some(other) => bail!("auth mode {other:?} is unknown; use keys or none"),
        };
        let tls = match (tls_cert, tls_key, tls_client_ca) {
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
            open_reflection: open_reflection.unwrap_or(false),
            grpc_web: grpc_web(grpc_web_enabled, grpc_web_origins)?,
            metrics_listen,
            otlp_endpoint: crate::telemetry::traces::otlp_endpoint(otlp_endpoint.as_deref()),
            bootstrap_key: bootstrap_key(bootstrap_api_key, bootstrap_tenant),
            key_rate_limit: std::num::NonZeroU32::new(key_rate_limit.unwrap_or(1000)),
            tls,
            tls_reload_interval: duration(
                "tls_reload_interval",
                tls_reload_interval,
                Duration::from_secs(10),
            )?,
            data_dir: data_dir.unwrap_or_else(default_data_dir),
            database_url,
            provider,
            lifecycle: LifecycleConfig {
                default_timeout: optional_duration(
                    "default_timeout",
                    default_timeout,
                    lifecycle_defaults.default_timeout,
                )?,
                max_timeout: optional_duration(
                    "max_timeout",
                    max_timeout,
                    lifecycle_defaults.max_timeout,
                )?,
                provider_call_timeout: duration(
                    "provider_call_timeout",
                    provider_call_timeout,
                    lifecycle_defaults.provider_call_timeout,
                )?,
                watch_poll_interval: lifecycle_defaults.watch_poll_interval,
                quotas,
                max_commands: max_commands.unwrap_or(lifecycle_defaults.max_commands),
                allow_bridge_network: allow_bridge_network.unwrap_or(false),
                default_resources: {
                    let defaults = lifecycle_defaults.default_resources;
                    let memory = match default_memory {
                        Some(text) => Some(size("default_memory", &text)?),
                        None => defaults.memory_bytes,
                    };
                    // 0 means no limit.
                    Resources {
                        cpu_millis: default_cpu_millis.or(defaults.cpu_millis),
                        memory_bytes: memory,
                        pids: default_pids.or(defaults.pids),
                    }
                    .without_zeros()
                },
            },
            reap_interval: duration("reap_interval", reap_interval, Duration::from_secs(5))?,
            reaper_lease_ttl: lease_ttl(reaper_lease_ttl)?,
            shutdown_grace: duration("shutdown_grace", shutdown_grace, Duration::from_secs(30))?,
            log_format,
            log_filter: log.unwrap_or_else(|| "info".to_owned()),
            agent: AgentLaunch {
                binary: agent_binary,
                max_commands: max_commands_per_sandbox.unwrap_or(1024),
                output_budget: bytes("command_output_budget", command_output_budget, 64 << 20)?,
            },
            docker,
            kubernetes,
            preview: preview::resolve(preview)?,
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

/// The quota that `args` set (its fields unset: unlimited, or the default
/// tenant's for an override).
fn quota_of(args: QuotaArgs) -> anyhow::Result<Quota> {
    let QuotaArgs {
        quota_running_sandboxes,
        quota_commands,
        quota_max_cpu_millis,
        quota_max_memory,
        quota_allowed_hosts,
    } = args;
    Ok(Quota {
        running_sandboxes: quota_running_sandboxes,
        commands: quota_commands,
        max_cpu_millis: quota_max_cpu_millis,
        max_memory_bytes: quota_max_memory
            .map(|text| size("quota_max_memory", &text))
            .transpose()?,
        allowed_hosts: quota_allowed_hosts
            .map(|hosts| {
                hosts
                    .iter()
                    .filter(|host| !host.trim().is_empty())
                    .map(|host| {
                        host.parse()
                            .map_err(|e| anyhow::anyhow!("quota_allowed_hosts: {e}"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .transpose()?,
    })
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

/// A DNS server's address: an IP address, with a port or on port 53.
fn dns_server(text: &str) -> anyhow::Result<std::net::SocketAddr> {
    if let Ok(address) = text.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(address, 53));
    }
    text.parse().map_err(|_| {
        anyhow::anyhow!(
            "allow_list_dns: {text:?} is not a DNS server's address such as 10.0.0.2 or \
             127.0.0.1:5353"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The configuration of a file holding `text`, under `args`.
    fn with_file(text: &str, args: ServeArgs) -> anyhow::Result<ServerConfig> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("paddock.toml");
        std::fs::write(&file, text).unwrap();
        ServerConfig::resolve(ServeArgs {
            config: Some(file),
            ..args
        })
    }

    #[test]
    fn quotas_have_the_same_names_in_flags_and_file_and_tenant_tables() {
        let config = with_file(
            "quota_running_sandboxes = 2\nquota_commands = 1\nquota_max_memory = \"64MiB\"\n\
             open_reflection = true\n\
             [tenant_quotas.big]\nquota_running_sandboxes = 3\n\
             quota_allowed_hosts = [\"PyPI.org\", \"*.pythonhosted.org\"]\n",
            ServeArgs {
                quota: QuotaArgs {
                    quota_commands: Some(5),
                    ..QuotaArgs::default()
                },
                ..ServeArgs::default()
            },
        )
        .unwrap();
        let quotas = &config.lifecycle.quotas;
        assert_eq!(quotas.default.running_sandboxes, Some(2));
        assert_eq!(quotas.default.commands, Some(5), "the flag wins");
        assert_eq!(quotas.default.max_memory_bytes, Some(64 << 20));
        let big = quotas.of("big");
        assert_eq!(big.running_sandboxes, Some(3));
        assert_eq!(big.commands, Some(5), "the rest is every tenant's");
        assert_eq!(
            big.allowed_hosts,
            Some(vec![
                "pypi.org".parse().unwrap(),
                "*.pythonhosted.org".parse().unwrap()
            ])
        );
        assert_eq!(quotas.default.allowed_hosts, None);
        assert!(config.open_reflection);
    }

    #[test]
    fn file_mistakes_name_the_key() {
        for (text, named) in [
            (
                "[tenant_quotas.big]\nrunning_sandboxes = 3\n",
                "running_sandboxes",
            ),
            ("key_rate_limit = \"fast\"\n", "key_rate_limit"),
            ("config = \"other.toml\"\n", "config"),
            ("quota_max_memory = \"lots\"\n", "quota_max_memory"),
            (
                "quota_allowed_hosts = [\"10.0.0.1/8\"]\n",
                "quota_allowed_hosts",
            ),
            (
                "[tenant_quotas.\"a b\"]\nquota_commands = 1\n",
                "tenant_quotas",
            ),
        ] {
            let error = with_file(text, ServeArgs::default()).unwrap_err();
            assert!(format!("{error:#}").contains(named), "{text}: {error:#}");
        }
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
