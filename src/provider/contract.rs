//! The contract between the domain and a way of making sandboxes: the
//! [`Provider`] trait, what it is given and what it reports. Every method's
//! doc comment is a promise that tests/provider_contract checks.

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::agent_client::AgentChannel;
use crate::error::Result;
use crate::sandbox::SandboxSpec;

/// How providers run the agent in each sandbox.
#[derive(Debug, Clone)]
pub struct AgentLaunch {
    /// The `paddock` binary that runs `paddock agent`.
    pub binary: std::path::PathBuf,
    /// The most commands running at once in one sandbox.
    pub max_commands: usize,
    /// The bytes of output kept per command.
    pub output_budget: u64,
}

/// What a provider can do. A flag is true only when the provider really does
/// it today.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Commands can run with a terminal.
    pub tty: bool,
    /// Signals can be sent to commands.
    pub signals: bool,
    /// Sandboxes stop and start again with their filesystem kept.
    pub stop_start: bool,
    /// Named volumes can be mounted.
    pub volumes: bool,
    /// A sandbox can have no network.
    pub network_none: bool,
    /// A sandbox's network can be limited to the internet
    /// ([`crate::sandbox::NetworkMode::Egress`]), as checked last.
    pub network_egress: bool,
    /// A sandbox can join an open network shared with others and the host.
    pub network_bridge: bool,
    /// A sandbox's network can be limited to the hosts it names
    /// ([`crate::sandbox::NetworkMode::AllowList`]), as checked last.
    pub network_allow_list: bool,
    /// Resource limits are enforced.
    pub resource_limits: bool,
    /// Sandboxes are made from images.
    pub images: bool,
    /// Commands run inside sandboxes.
    pub exec: bool,
    /// Files move in and out of sandboxes.
    pub files: bool,
    /// A sandbox's root filesystem can be read-only.
    pub read_only_root: bool,
    /// TCP ports inside sandboxes can be forwarded (the agent dials them).
    pub port_forward: bool,
    /// Template images can be built from a Dockerfile on the engine.
    pub template_builds: bool,
    /// A sandbox's filesystem can be captured as a template image.
    pub snapshots: bool,
}

/// An image to build from a Dockerfile and its build context.
#[derive(Debug, Clone)]
pub struct ImageBuild {
    /// The image's name, `repository:tag`.
    pub tag: String,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// `ARG` values.
    pub build_args: std::collections::HashMap<String, String>,
}

/// A build context: the chunks of a tar archive, as they arrive.
pub type BuildContext =
    futures::stream::BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>;

/// How a provider describes itself to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The name callers use to ask for it.
    pub name: String,
    /// Whether it can make sandboxes now.
    pub available: bool,
    /// Why not, or facts about it.
    pub detail: String,
    /// How strongly it isolates sandboxes, in a sentence.
    pub isolation: String,
    /// What it can do.
    pub capabilities: Capabilities,
    /// The runtimes a request may name, the default first; empty for a
    /// provider without runtimes.
    pub runtimes: Vec<String>,
}

/// What a provider needs to make a sandbox's object.
#[derive(Debug, Clone, Copy)]
pub struct ProvisionRequest<'a> {
    /// The durable sandbox id; the provider marks its object with it.
    pub sandbox_id: &'a str,
    /// The owning tenant; the provider marks its object with it too.
    pub tenant: &'a str,
    /// What the sandbox is made of.
    pub spec: &'a SandboxSpec,
}

/// What a provider observes of one of its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The sandbox id the object is marked with.
    pub sandbox_id: String,
    /// The provider's own id for the object.
    pub provider_ref: String,
    /// Whether it is running (as opposed to stopped).
    pub running: bool,
}

/// Something that happened to a provider object without Paddock asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The sandbox's object stopped by itself: its init exited or was killed,
    /// or its engine went down.
    Stopped {
        /// The sandbox's tenant.
        tenant: String,
        /// The sandbox.
        sandbox_id: String,
        /// What happened, for humans.
        reason: String,
    },
    /// Someone else removed the sandbox's object.
    Removed {
        /// The sandbox's tenant.
        tenant: String,
        /// The sandbox.
        sandbox_id: String,
        /// What happened, for humans.
        reason: String,
    },
    /// Observations may have been missed (the provider lost its engine for a
    /// while): every sandbox of the provider should be checked.
    Resync,
}

/// What a running sandbox uses now, as its provider measures it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// CPU time its processes used since it started, user and system.
    pub cpu_time: std::time::Duration,
    /// Memory in use now, page cache the kernel can reclaim left out.
    pub memory_bytes: u64,
    /// The most memory in use at once since it started, where the
    /// provider can tell.
    pub memory_peak_bytes: Option<u64>,
    /// Processes and threads now.
    pub pids: u64,
    /// Bytes its filesystem holds beyond its image, when measured.
    pub disk_bytes: Option<u64>,
    /// Its network bytes, when it has a network of its own to count.
    pub network: Option<NetworkBytes>,
}

/// Network bytes since a sandbox started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkBytes {
    /// Bytes received.
    pub received: u64,
    /// Bytes sent.
    pub sent: u64,
}

impl NetworkBytes {
    /// The bytes of every interface but loopback in the text of a
    /// `/proc/net/dev`; `None` when it lists no other interface.
    pub fn from_net_dev(text: &str) -> Option<Self> {
        let mut total = None::<Self>;
        // Two header lines, then "  name: rx_bytes rx_packets ... tx_bytes ...".
        for line in text.lines().skip(2) {
            let Some((name, counters)) = line.split_once(':') else {
                continue;
            };
            if name.trim() == "lo" {
                continue;
            }
            let counters: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect();
            let sum = total.get_or_insert_with(Self::default);
            sum.received += counters.first().copied().unwrap_or(0);
            sum.sent += counters.get(8).copied().unwrap_or(0);
        }
        total
    }
}

/// A way of making sandboxes.
///
/// Every method is idempotent and safe to call again after a crash at any
/// point: the domain writes its record before calling, and on start-up calls
/// again to finish whatever a crash cut short. Objects are found by sandbox id,
/// never by a handle held in memory.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The name callers use to ask for this provider.
    fn name(&self) -> &str;

    /// What the provider can do: fixed once it is open, and cheap to ask.
    fn capabilities(&self) -> Capabilities;

    /// The provider's availability, isolation and capabilities now.
    async fn info(&self) -> ProviderInfo;

    /// Checks and completes a sandbox's spec before its record is written:
    /// fills in defaults (such as the image) and makes sure what the spec
    /// needs is there (pulling the image). A failure here leaves nothing
    /// behind. The default accepts the spec as it is.
    async fn prepare(&self, spec: &mut SandboxSpec) -> Result<()> {
        let _ = spec;
        Ok(())
    }

    /// Makes the object for a sandbox, not yet running, and returns its
    /// provider reference. If an object for this sandbox id exists already
    /// (a retry, or a crash after making it), returns that one's reference.
    /// A half-made object from an earlier attempt is cleared and made anew.
    /// The storage of a named volume it mounts is made, empty, when missing.
    async fn create(&self, request: ProvisionRequest<'_>) -> Result<String>;

    /// Starts the sandbox's object and returns once its agent answers, with
    /// the channel it answered through (the domain keeps it for the
    /// sandbox's calls). Starting a running one starts nothing and returns a
    /// channel to its agent. `NOT_FOUND` when the object is gone.
    async fn start(&self, sandbox_id: &str) -> Result<AgentChannel>;

    /// Stops the sandbox's object, keeping its filesystem. Stopping a stopped
    /// one does nothing. `NOT_FOUND` when the object is gone.
    async fn stop(&self, sandbox_id: &str) -> Result<()>;

    /// Removes the sandbox's object and everything in it. Removing a missing
    /// or half-made one succeeds.
    async fn delete(&self, sandbox_id: &str) -> Result<()>;

    /// What the provider sees of the sandbox's object; `None` when there is
    /// no complete object.
    async fn inspect(&self, sandbox_id: &str) -> Result<Option<Observed>>;

    /// A new channel to the running sandbox's agent (the domain asks when
    /// it holds none, such as after a server restart). The channel connects
    /// lazily; calls on it fail with UNAVAILABLE while the agent cannot be
    /// reached.
    async fn connect(&self, sandbox_id: &str) -> Result<AgentChannel>;

    /// Every complete object this provider made, for start-up reconciliation
    /// (which removes those whose sandbox is gone). Half-made objects are
    /// cleared as a side effect.
    async fn list(&self) -> Result<Vec<Observed>>;

    /// What the running sandbox uses now. `NOT_FOUND` when its object is
    /// gone, FAILED_PRECONDITION when it is not running.
    async fn usage(&self, sandbox_id: &str) -> Result<Usage>;

    /// Makes the empty storage of named volume `volume_id` of `tenant`.
    /// Making one that exists does nothing. FAILED_PRECONDITION for a
    /// provider without the `volumes` capability (the default).
    async fn create_volume(&self, volume_id: &str, tenant: &str) -> Result<()> {
        let _ = (volume_id, tenant);
        Err(crate::error::Error::failed_precondition(format!(
            "provider {} cannot hold volumes",
            self.name()
        )))
    }

    /// Removes named volume `volume_id` and its data. Removing a missing one
    /// succeeds; one that a sandbox's object still mounts is
    /// FAILED_PRECONDITION.
    async fn delete_volume(&self, volume_id: &str) -> Result<()> {
        let _ = volume_id;
        Ok(())
    }

    /// Builds image `build.tag` from the Dockerfile in `context`, sending
    /// each line of the build's log to `log` as it comes. INVALID_ARGUMENT
    /// naming the failing step when the build fails; FAILED_PRECONDITION
    /// for a provider without the `template_builds` capability (the
    /// default).
    async fn build_image(
        &self,
        build: ImageBuild,
        context: BuildContext,
        log: tokio::sync::mpsc::Sender<String>,
    ) -> Result<()> {
        let _ = (build, context, log);
        Err(crate::error::Error::failed_precondition(format!(
            "provider {} cannot build images",
            self.name()
        )))
    }

    /// Captures the filesystem of sandbox `sandbox_id` (beyond its volumes)
    /// as image `tag`. FAILED_PRECONDITION for a provider without the
    /// `snapshots` capability (the default).
    async fn snapshot(&self, sandbox_id: &str, tag: &str) -> Result<()> {
        let _ = (sandbox_id, tag);
        Err(crate::error::Error::failed_precondition(format!(
            "provider {} cannot capture a sandbox's filesystem",
            self.name()
        )))
    }

    /// Removes image `tag`, made by [`Provider::build_image`] or
    /// [`Provider::snapshot`]. Removing a missing one succeeds; one that a
    /// sandbox's object still uses is FAILED_PRECONDITION.
    async fn remove_image(&self, tag: &str) -> Result<()> {
        let _ = tag;
        Ok(())
    }

    /// Observations of objects changing without Paddock asking (engine
    /// events), for providers that can see them; `None` for those that
    /// cannot.
    fn observe(&self) -> Option<broadcast::Receiver<Observation>> {
        None
    }
}
