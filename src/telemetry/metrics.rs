//! The server's Prometheus metrics: one [`Metrics`] per server, counted
//! where things happen and written out in the OpenMetrics text format (which
//! Prometheus scrapes) by [`Metrics::encode`].
//!
//! Every label takes values from a small fixed set (RPC methods the server
//! serves, status codes, providers, states, causes), never from callers'
//! strings, so the number of series stays bounded whatever clients send.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::sandbox_figures::{SandboxFamilies, SandboxFigures, signed};
use super::warm_pools::WarmPoolFamilies;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: String,
    method: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CensusLabels {
    provider: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 250 µs to about 65 s: a short command is a
/// millisecond, a create a few hundred, a pull or a long RPC stream much
/// more.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 19))
}

/// Buckets for sandbox creation and start, 10 ms to about 164 s.
fn lifecycle_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

/// Which way bytes moved through the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A command's standard input.
    Stdin,
    /// A command's standard output.
    Stdout,
    /// A command's standard error.
    Stderr,
    /// Into a sandbox by `Upload`, `UploadArchive` or `WriteFile`.
    Upload,
    /// Out of a sandbox by `Download`, `DownloadArchive` or `ReadFile`.
    Download,
    /// Into a sandbox's server through a port forward or the preview proxy.
    ForwardIn,
    /// Out of a sandbox's server through a port forward or the preview proxy.
    ForwardOut,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Self::Stdin => "stdin",
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Upload => "upload",
            Self::Download => "download",
            Self::ForwardIn => "forward_in",
            Self::ForwardOut => "forward_out",
        }
    }

    fn is_transfer(self) -> bool {
        matches!(
            self,
            Self::Upload | Self::Download | Self::ForwardIn | Self::ForwardOut
        )
    }
}

/// The call that started a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// `RunCommand`.
    Run,
    /// An `Exec` stream's start.
    Exec,
    /// `StartCommand`.
    Detached,
}

impl CommandKind {
    fn name(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Exec => "exec",
            Self::Detached => "detached",
        }
    }
}

/// Why the reaper acted on a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReapCause {
    /// Its lifetime ran out: deleted.
    Lifetime,
    /// Idle past its idle timeout: stopped.
    Idle,
    /// Idle by the store's account but running a command: kept, its
    /// activity noted.
    Busy,
}

impl ReapCause {
    fn name(self) -> &'static str {
        match self {
            Self::Lifetime => "lifetime",
            Self::Idle => "idle",
            Self::Busy => "busy",
        }
    }
}

/// What a scrape reads at its moment, besides the counters.
#[derive(Debug, Clone, Default)]
pub struct ScrapeFigures {
    /// The store's census.
    pub census: Vec<CensusEntry>,
    /// RunCommand calls and Exec streams in flight through this server.
    pub commands_running: u64,
    /// Running sandboxes measured, when this server measures them.
    pub sandboxes: Vec<SandboxFigures>,
    /// Running sandboxes left out of `sandboxes` (past the bound, or not
    /// measurable now).
    pub sandboxes_left_out: u64,
}

/// A count of sandboxes in one state on one provider, as the store says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CensusEntry {
    /// The provider's name.
    pub provider: String,
    /// The state's name, as the API spells it (`RUNNING`).
    pub state: String,
    /// How many.
    pub count: u64,
}

/// The server's metrics. Cheap to share behind an `Arc`; every method takes
/// `&self`.
pub struct Metrics {
    registry: Registry,
    rpcs: Family<RpcLabels, Counter>,
    rpc_seconds: Histograms<RpcLabels>,
    sandboxes: Family<CensusLabels, Gauge>,
    create_seconds: Histograms<ProviderLabels>,
    start_seconds: Histograms<ProviderLabels>,
    commands_started: Family<KindLabels, Counter>,
    commands_running: Gauge,
    exec_bytes: Family<DirectionLabels, Counter>,
    transfer_bytes: Family<DirectionLabels, Counter>,
    reaper_actions: Family<CauseLabels, Counter>,
    agent_failures: Family<ProviderLabels, Counter>,
    store_errors: Family<OperationLabels, Counter>,
    lease_held: Gauge,
    sandbox_figures: SandboxFamilies,
    warm_pools: WarmPoolFamilies,
    /// Serialises encoding with the census refresh before it, so two scrapes
    /// at once never write a half-refreshed census.
    encoding: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under `paddock_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("paddock");
        let rpcs = Family::<RpcLabels, Counter>::default();
        registry.register(
            "rpcs",
            "gRPC calls this server finished, by service, method and status code",
            rpcs.clone(),
        );
        let rpc_seconds = Histograms::new_with_constructor(latency_buckets as fn() -> Histogram);
        registry.register_with_unit(
            "rpc_duration",
            "How long gRPC calls took, from the request to the end of the response \
             (a stream's whole life)",
            Unit::Seconds,
            rpc_seconds.clone(),
        );
        let sandboxes = Family::<CensusLabels, Gauge>::default();
        registry.register(
            "sandboxes",
            "Sandboxes in the store by provider and state (every replica's, as the \
             store counts them at scrape time; DELETED left out)",
            sandboxes.clone(),
        );
        let create_seconds =
            Histograms::new_with_constructor(lifecycle_buckets as fn() -> Histogram);
        registry.register_with_unit(
            "sandbox_create_duration",
            "How long a CreateSandbox took to bring a sandbox to RUNNING",
            Unit::Seconds,
            create_seconds.clone(),
        );
        let start_seconds =
            Histograms::new_with_constructor(lifecycle_buckets as fn() -> Histogram);
        registry.register_with_unit(
            "sandbox_start_duration",
            "How long a StartSandbox took to bring a stopped sandbox to RUNNING",
            Unit::Seconds,
            start_seconds.clone(),
        );
        let commands_started = Family::<KindLabels, Counter>::default();
        registry.register(
            "commands_started",
            "Commands started in sandboxes through this server, by the call that started \
             them: run (RunCommand), exec (Exec) or detached (StartCommand)",
            commands_started.clone(),
        );
        let commands_running = Gauge::default();
        registry.register(
            "commands_running",
            "RunCommand calls and Exec streams in flight through this server",
            commands_running.clone(),
        );
        let exec_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register_with_unit(
            "exec",
            "Bytes of commands' stdin, stdout and stderr carried by this server",
            Unit::Bytes,
            exec_bytes.clone(),
        );
        let transfer_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register_with_unit(
            "transfer",
            "Bytes of file content moved into (upload) and out of (download) sandboxes",
            Unit::Bytes,
            transfer_bytes.clone(),
        );
        let reaper_actions = Family::<CauseLabels, Counter>::default();
        registry.register(
            "reaper_actions",
            "What the reaper did, by cause: lifetime (deleted), idle (stopped), busy (kept)",
            reaper_actions.clone(),
        );
        let agent_failures = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "agent_connection_failures",
            "Times this server could not reach a sandbox's agent",
            agent_failures.clone(),
        );
        let store_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Store operations that failed, by operation",
            store_errors.clone(),
        );
        let lease_held = Gauge::default();
        registry.register(
            "reaper_lease_held",
            "1 while this server holds the reaper's lease (runs the reaper and the \
             engine reconciler), else 0",
            lease_held.clone(),
        );
        let sandbox_figures = SandboxFamilies::register(&mut registry);
        let warm_pools = WarmPoolFamilies::register(&mut registry);
        registry.register(
            "build",
            "The running build",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Self {
            registry,
            rpcs,
            rpc_seconds,
            sandboxes,
            create_seconds,
            start_seconds,
            commands_started,
            commands_running,
            exec_bytes,
            transfer_bytes,
            reaper_actions,
            agent_failures,
            store_errors,
            lease_held,
            sandbox_figures,
            warm_pools,
            encoding: Mutex::new(()),
        }
    }

    /// The warm pools' metrics.
    pub fn warm_pools(&self) -> &WarmPoolFamilies {
        &self.warm_pools
    }

    /// A gRPC call of `service`/`method` ended with status `code` (its
    /// canonical name, `OK`, `NOT_FOUND`…) after `took`.
    pub fn rpc_finished(&self, service: &str, method: &str, code: &'static str, took: Duration) {
        let labels = RpcLabels {
            service: service.to_owned(),
            method: method.to_owned(),
            code,
        };
        self.rpcs.get_or_create(&labels).inc();
        self.rpc_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A sandbox on `provider` reached RUNNING `took` after its create.
    pub fn sandbox_created(&self, provider: &str, took: Duration) {
        self.create_seconds
            .get_or_create(&provider_labels(provider))
            .observe(took.as_secs_f64());
    }

    /// A stopped sandbox on `provider` reached RUNNING `took` after its
    /// start.
    pub fn sandbox_started(&self, provider: &str, took: Duration) {
        self.start_seconds
            .get_or_create(&provider_labels(provider))
            .observe(took.as_secs_f64());
    }

    /// A command was started by a call of `kind`.
    pub fn command_started(&self, kind: CommandKind) {
        self.commands_started
            .get_or_create(&KindLabels { kind: kind.name() })
            .inc();
    }

    /// `bytes` moved `direction`.
    pub fn bytes_moved(&self, direction: Direction, bytes: u64) {
        let family = if direction.is_transfer() {
            &self.transfer_bytes
        } else {
            &self.exec_bytes
        };
        family
            .get_or_create(&DirectionLabels {
                direction: direction.name(),
            })
            .inc_by(bytes);
    }

    /// The reaper acted on a sandbox for `cause`.
    pub fn reaped(&self, cause: ReapCause) {
        self.reaper_actions
            .get_or_create(&CauseLabels {
                cause: cause.name(),
            })
            .inc();
    }

    /// The agent of a sandbox on `provider` could not be reached.
    pub fn agent_connection_failed(&self, provider: &str) {
        self.agent_failures
            .get_or_create(&provider_labels(provider))
            .inc();
    }

    /// A store operation failed.
    pub fn store_failed(&self, operation: &'static str) {
        self.store_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
    }

    /// Whether this server holds the reaper's lease now.
    pub fn set_lease_held(&self, held: bool) {
        self.lease_held.set(i64::from(held));
    }

    /// The whole exposition, after setting what is read at scrape time
    /// (`figures`).
    pub fn encode(&self, figures: &ScrapeFigures) -> String {
        let _one_at_a_time = self
            .encoding
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // States and sandboxes no longer there must leave no series behind,
        // so each family read at scrape time is replaced whole.
        self.sandboxes.clear();
        for entry in &figures.census {
            self.sandboxes
                .get_or_create(&CensusLabels {
                    provider: entry.provider.clone(),
                    state: entry.state.clone(),
                })
                .set(signed(entry.count));
        }
        self.commands_running.set(signed(figures.commands_running));
        self.sandbox_figures
            .set(&figures.sandboxes, figures.sandboxes_left_out);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

fn provider_labels(provider: &str) -> ProviderLabels {
    ProviderLabels {
        provider: provider.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_appear_in_the_exposition_under_conventional_names() {
        let metrics = Metrics::new();
        metrics.rpc_finished(
            "paddock.v1.SandboxService",
            "GetSandbox",
            "NOT_FOUND",
            Duration::from_millis(3),
        );
        metrics.bytes_moved(Direction::Upload, 10);
        metrics.bytes_moved(Direction::Stdout, 7);
        metrics.reaped(ReapCause::Idle);
        let census = [CensusEntry {
            provider: "docker".into(),
            state: "RUNNING".into(),
            count: 2,
        }];
        let text = metrics.encode(&ScrapeFigures {
            census: census.to_vec(),
            commands_running: 1,
            sandboxes: vec![SandboxFigures {
                sandbox_id: "sbx_1".into(),
                provider: "docker".into(),
                cpu_seconds: 1.5,
                memory_bytes: 100,
                pids: 3,
                disk_bytes: None,
                network: Some((10, 20)),
            }],
            sandboxes_left_out: 0,
        });
        for line in [
            r#"paddock_rpcs_total{service="paddock.v1.SandboxService",method="GetSandbox",code="NOT_FOUND"} 1"#,
            r#"paddock_rpc_duration_seconds_count{service="paddock.v1.SandboxService",method="GetSandbox",code="NOT_FOUND"} 1"#,
            r#"paddock_transfer_bytes_total{direction="upload"} 10"#,
            r#"paddock_exec_bytes_total{direction="stdout"} 7"#,
            r#"paddock_reaper_actions_total{cause="idle"} 1"#,
            r#"paddock_sandboxes{provider="docker",state="RUNNING"} 2"#,
            "paddock_commands_running 1",
            r#"paddock_build_info{version=""#,
            r#"paddock_sandbox_cpu_seconds_total{sandbox_id="sbx_1",provider="docker"} 1.5"#,
            r#"paddock_sandbox_memory_bytes{sandbox_id="sbx_1",provider="docker"} 100"#,
            r#"paddock_sandbox_network_bytes_total{sandbox_id="sbx_1",provider="docker",direction="sent"} 20"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // A state no longer counted reads nothing rather than its old count.
        let text = metrics.encode(&ScrapeFigures::default());
        assert!(!text.contains("state=\"RUNNING\""), "{text}");
        assert!(!text.contains("sbx_1"), "{text}");
    }
}
