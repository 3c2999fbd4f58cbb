//! The `docker` provider: one container per sandbox on a Docker engine, local
//! or remote, with Paddock's static agent as the container's entrypoint.
//!
//! Every container, volume and image Paddock makes carries the label
//! `io.paddock.scope` with the store's identity, so a server finds exactly its
//! own objects (and those of its replicas) on an engine shared with others.
//! Containers are named after their sandbox, which makes create idempotent.
//!
//! Inside a sandbox container:
//!
//! ```text
//! /.paddock/bin/paddock       the agent, from a read-only volume shared by all sandboxes
//! /.paddock/state/            the agent's records and output logs (an anonymous volume)
//! /.paddock/state/agent.sock  the agent's socket, reached through `paddock agent-bridge`
//! ```

mod agent_volume;
mod bridge;
mod images;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, Mount, MountType,
    MountVolumeOptions, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use futures::StreamExt;
use tokio::sync::broadcast;
use tonic::transport::Channel;
use tracing::{debug, info, instrument, warn};

use super::{
    AgentLaunch, Capabilities, Observation, Observed, Provider, ProviderInfo, ProvisionRequest,
};
use crate::error::{Error, ErrorKind, Result};
use crate::pb;
use crate::sandbox::{NetworkMode, SandboxSpec};
use agent_volume::AgentBuild;

/// Where things are inside a sandbox container, and the labels on Paddock's
/// objects.
mod layout {
    pub const AGENT_DIR: &str = "/.paddock/bin";
    pub const AGENT_BINARY: &str = "/.paddock/bin/paddock";
    pub const STATE_DIR: &str = "/.paddock/state";
    pub const AGENT_SOCKET: &str = "/.paddock/state/agent.sock";
    /// The socket's name in the state directory.
    pub const AGENT_SOCKET_NAME: &str = "agent.sock";

    /// The identity of the store whose server made the object.
    pub const LABEL_SCOPE: &str = "io.paddock.scope";
    /// What the object is for: [`ROLE_SANDBOX`] or [`ROLE_AGENT_CHECK`].
    pub const LABEL_ROLE: &str = "io.paddock.role";
    pub const LABEL_SANDBOX_ID: &str = "io.paddock.sandbox-id";
    pub const LABEL_TENANT: &str = "io.paddock.tenant";
    pub const LABEL_AGENT_SHA256: &str = "io.paddock.agent-sha256";

    pub const ROLE_SANDBOX: &str = "sandbox";
    pub const ROLE_AGENT_CHECK: &str = "agent-check";
}

/// The smallest memory limit the engine accepts.
const MIN_MEMORY_BYTES: u64 = 6 << 20;
/// The smallest process limit that leaves room for the agent's threads and
/// a command.
const MIN_PIDS: u64 = 8;
/// How long a stopping container's agent may take to end its commands
/// before the engine kills it.
const STOP_GRACE_SECONDS: i32 = 5;
/// How long a started container's agent may take to answer.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the engine may take to answer at start-up and in health checks.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between attempts to reach an engine that went away.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// How to reach the engine and what to run on it.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// The engine's address (`unix://…`, `tcp://…`); `None` means
    /// `DOCKER_HOST`, or the local default socket.
    pub host: Option<String>,
    /// A directory with `ca.pem`, `cert.pem` and `key.pem` for a TLS
    /// connection to a TCP engine.
    pub tls_dir: Option<PathBuf>,
    /// The image of sandboxes whose request names none.
    pub default_image: Option<String>,
    /// The longest an image pull may take.
    pub pull_timeout: Duration,
    /// The static agent and its limits.
    pub agent: AgentLaunch,
    /// The identity of the store, put on every object as `io.paddock.scope`.
    pub scope: String,
    /// How to reach agents.
    pub transport: AgentTransport,
    /// Testing only: how long each create waits after making its container,
    /// so that crash tests can kill the server mid-create.
    pub create_delay: Duration,
}

/// How the server reaches the agents in containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentTransport {
    /// The agent's socket straight from the host when the engine is local and
    /// the container's state volume is visible here; the exec bridge
    /// otherwise.
    Auto,
    /// Always the exec bridge (as for a remote engine).
    Bridge,
}

/// Whether the engine answers, as last seen.
#[derive(Debug, Clone)]
struct EngineStatus {
    available: bool,
    detail: String,
    /// The engine's CPUs, when known.
    cpus: Option<i64>,
}

/// Sandboxes as containers on a Docker engine.
pub struct DockerProvider {
    docker: Docker,
    settings: DockerSettings,
    address: String,
    /// The agent build, or why there is none usable.
    agent: std::result::Result<AgentBuild, Error>,
    /// Serialises installing the agent; true once installed by this server.
    agent_installed: tokio::sync::Mutex<bool>,
    engine: RwLock<EngineStatus>,
    channels: Mutex<HashMap<String, Channel>>,
    observations: broadcast::Sender<Observation>,
}

impl std::fmt::Debug for DockerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerProvider")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl DockerProvider {
    /// The provider's name.
    pub const NAME: &'static str = "docker";

    /// A provider for the engine `settings` name. Fails only on settings that
    /// cannot work (a bad address, missing TLS files); an engine that does not
    /// answer yet leaves the provider unavailable until it does.
    pub async fn open(settings: DockerSettings) -> Result<Arc<Self>> {
        let address = settings
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let docker = match &settings.tls_dir {
            Some(dir) => Docker::connect_with_ssl(
                &address,
                &dir.join("key.pem"),
                &dir.join("cert.pem"),
                &dir.join("ca.pem"),
                120,
                bollard::API_DEFAULT_VERSION,
            ),
            None => Docker::connect_with_host(&address),
        }
        .map_err(|e| {
            Error::invalid_argument(
                "docker_host",
                format!("cannot use the Docker engine address {address:?}: {e}"),
            )
        })?;
        let agent = AgentBuild::inspect(&settings.agent.binary);
        let (observations, _) = broadcast::channel(1024);
        let provider = Arc::new(Self {
            docker,
            settings,
            address,
            agent,
            agent_installed: tokio::sync::Mutex::new(false),
            engine: RwLock::new(EngineStatus {
                available: false,
                detail: "not checked yet".to_owned(),
                cpus: None,
            }),
            channels: Mutex::new(HashMap::new()),
            observations,
        });
        provider.check_engine().await;
        tokio::spawn(watch_engine(Arc::downgrade(&provider)));
        Ok(provider)
    }

    /// Whether the engine answered the last check.
    pub fn engine_available(&self) -> bool {
        self.engine.read().expect("engine status").available
    }

    /// Pings the engine, negotiating the API version, and records the answer.
    async fn check_engine(&self) -> bool {
        let outcome = tokio::time::timeout(PING_TIMEOUT, async {
            let negotiated = self.docker.clone().negotiate_version().await?;
            let version = negotiated.version().await?;
            let info = negotiated.info().await?;
            Ok::<_, bollard::errors::Error>((version, info))
        })
        .await;
        let status = match outcome {
            Ok(Ok((version, info))) => EngineStatus {
                available: true,
                detail: format!(
                    "Docker engine {} (API {}) at {}",
                    version.version.as_deref().unwrap_or("?"),
                    version.api_version.as_deref().unwrap_or("?"),
                    self.address
                ),
                cpus: info.ncpu,
            },
            Ok(Err(e)) => EngineStatus {
                available: false,
                detail: format!("the Docker engine at {} does not answer: {e}", self.address),
                cpus: None,
            },
            Err(_) => EngineStatus {
                available: false,
                detail: format!(
                    "the Docker engine at {} did not answer within {}",
                    self.address,
                    humantime::format_duration(PING_TIMEOUT)
                ),
                cpus: None,
            },
        };
        let available = status.available;
        let mut current = self.engine.write().expect("engine status");
        if current.available != available || current.detail != status.detail {
            info!(available, detail = %status.detail, "Docker engine status");
        }
        *current = status;
        available
    }

    fn mark_unreachable(&self, why: impl std::fmt::Display) {
        let mut current = self.engine.write().expect("engine status");
        if current.available {
            warn!(address = %self.address, error = %why, "lost the Docker engine");
        }
        *current = EngineStatus {
            available: false,
            detail: format!(
                "the Docker engine at {} does not answer: {why}",
                self.address
            ),
            cpus: current.cpus,
        };
    }

    fn container_name(sandbox_id: &str) -> Result<String> {
        if !crate::ids::is_sandbox_id(sandbox_id) {
            return Err(Error::internal(
                "naming a sandbox container",
                format!("malformed sandbox id {sandbox_id:?}"),
            ));
        }
        Ok(format!("paddock-{sandbox_id}"))
    }

    fn agent_build(&self) -> Result<&AgentBuild> {
        self.agent.as_ref().map_err(Clone::clone)
    }

    /// Installs the agent volume once per server (and again after a failure).
    async fn ensure_agent(&self) -> Result<&AgentBuild> {
        let build = self.agent_build()?;
        let mut installed = self.agent_installed.lock().await;
        if !*installed {
            build.install(&self.docker, &self.settings.scope).await?;
            info!(volume = %build.volume, "agent volume ready");
            *installed = true;
        }
        Ok(build)
    }

    /// The container of `sandbox_id`, if it exists and is Paddock's.
    async fn find(&self, sandbox_id: &str) -> Result<Option<ContainerInspectResponse>> {
        let name = Self::container_name(sandbox_id)?;
        match self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
        {
            Ok(container) => {
                let labels = container.config.as_ref().and_then(|c| c.labels.as_ref());
                let ours = labels.is_some_and(|labels| {
                    labels.get(layout::LABEL_SCOPE) == Some(&self.settings.scope)
                        && labels.get(layout::LABEL_SANDBOX_ID).map(String::as_str)
                            == Some(sandbox_id)
                });
                if !ours {
                    return Err(Error::failed_precondition(format!(
                        "a container named {name} exists on the engine but was not made by this \
                         Paddock; remove or rename it"
                    )));
                }
                Ok(Some(container))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(engine_error("inspecting a sandbox container", e)),
        }
    }

    fn container_config(
        &self,
        request: &ProvisionRequest<'_>,
        build: &AgentBuild,
    ) -> Result<ContainerCreateBody> {
        let spec = request.spec;
        let image = spec
            .image
            .clone()
            .ok_or_else(|| Error::invalid_argument("image", "provider docker needs an image"))?;
        let agent = &self.settings.agent;
        let mut labels = labels_of(&self.settings.scope, layout::ROLE_SANDBOX);
        labels.insert(
            layout::LABEL_SANDBOX_ID.to_owned(),
            request.sandbox_id.to_owned(),
        );
        labels.insert(layout::LABEL_TENANT.to_owned(), request.tenant.to_owned());
        let mut mounts = vec![
            Mount {
                target: Some(layout::AGENT_DIR.to_owned()),
                source: Some(build.volume.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(true),
                volume_options: Some(MountVolumeOptions {
                    no_copy: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
            // An anonymous volume: removed with the container.
            Mount {
                target: Some(layout::STATE_DIR.to_owned()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            },
        ];
        mounts.extend(spec.volumes.iter().map(|volume| Mount {
            target: Some(volume.mount_path.clone()),
            source: Some(volume.name.clone()),
            typ: Some(MountType::VOLUME),
            read_only: Some(volume.read_only),
            ..Default::default()
        }));
        // A read-only root still needs somewhere to work: the workdir gets
        // a volume of its own (kept across stop and start) and /tmp a tmpfs.
        let workdir_mounted = spec.volumes.iter().any(|v| v.mount_path == spec.workdir);
        if spec.read_only_root && !workdir_mounted && spec.workdir != "/" {
            mounts.push(Mount {
                target: Some(spec.workdir.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }
        let resources = &spec.resources;
        let host_config = HostConfig {
            tmpfs: spec
                .read_only_root
                .then(|| HashMap::from([("/tmp".to_owned(), "rw,nosuid,nodev".to_owned())])),
            mounts: Some(mounts),
            network_mode: Some(
                match spec.network {
                    NetworkMode::None => "none",
                    NetworkMode::Bridge => "bridge",
                }
                .to_owned(),
            ),
            nano_cpus: resources
                .cpu_millis
                .map(|millis| i64::try_from(millis.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
            memory: resources
                .memory_bytes
                .map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
            // No swap beyond the memory limit: the limit means what it says.
            memory_swap: resources
                .memory_bytes
                .map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
            pids_limit: resources
                .pids
                .map(|pids| i64::try_from(pids).unwrap_or(i64::MAX)),
            readonly_rootfs: Some(spec.read_only_root),
            // The agent is the container's init; Paddock, not the engine,
            // decides when a sandbox runs.
            init: Some(false),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(ContainerCreateBody {
            image: Some(image),
            entrypoint: Some(vec![layout::AGENT_BINARY.to_owned()]),
            cmd: Some(vec![
                "agent".to_owned(),
                "--socket".to_owned(),
                layout::AGENT_SOCKET.to_owned(),
                "--sandbox-id".to_owned(),
                request.sandbox_id.to_owned(),
                "--state-dir".to_owned(),
                layout::STATE_DIR.to_owned(),
                "--workdir".to_owned(),
                spec.workdir.clone(),
                "--inherit-env".to_owned(),
                "--max-commands".to_owned(),
                agent.max_commands.to_string(),
                "--output-budget".to_owned(),
                agent.output_budget.to_string(),
            ]),
            env: Some(env),
            working_dir: Some(spec.workdir.clone()),
            // The agent runs commands as root inside the container; running
            // them as the image's user is not supported yet.
            user: Some("0".to_owned()),
            labels: Some(labels),
            stop_signal: Some("SIGTERM".to_owned()),
            stop_timeout: Some(i64::from(STOP_GRACE_SECONDS)),
            host_config: Some(host_config),
            ..Default::default()
        })
    }

    /// A new channel to the agent of `container`: straight to its socket
    /// when that is visible here (see [`AgentTransport::Auto`]), through an
    /// exec bridge otherwise.
    async fn new_channel(&self, container: &str) -> Channel {
        self.channel_to(container, self.local_socket(container).await)
    }

    /// A channel to the agent of `container` through `socket` when there is
    /// one (see [`DockerProvider::local_socket`]), through a bridge otherwise.
    fn channel_to(&self, container: &str, socket: Option<PathBuf>) -> Channel {
        match socket {
            Some(socket) => {
                debug!(container, socket = %socket.display(), "reaching the agent through its socket");
                bridge::local_channel(socket)
            }
            None => bridge::agent_channel(self.docker.clone(), container.to_owned()),
        }
    }

    /// Where the agent's socket of `container` is on this host, when the
    /// engine is local and its volume's directory is visible (and readable)
    /// here.
    async fn local_socket(&self, container: &str) -> Option<PathBuf> {
        if self.settings.transport != AgentTransport::Auto || !self.address.starts_with("unix://") {
            return None;
        }
        let inspected = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let source = inspected
            .mounts?
            .into_iter()
            .find(|m| m.destination.as_deref() == Some(layout::STATE_DIR))?
            .source?;
        let socket = PathBuf::from(source).join(layout::AGENT_SOCKET_NAME);
        // A Unix socket path holds at most 107 bytes; a data root deeper than
        // Docker's default can make it longer, and then only the bridge works.
        let fits = socket.as_os_str().len() < 108;
        (fits && std::fs::read_dir(socket.parent()?).is_ok()).then_some(socket)
    }

    /// Waits until the agent of a started container answers, through a new
    /// channel (through `socket`, see [`DockerProvider::local_socket`]) that
    /// is then kept for calls.
    async fn wait_for_agent(
        &self,
        sandbox_id: &str,
        container: &str,
        socket: Option<PathBuf>,
    ) -> Result<()> {
        let channel = self.channel_to(container, socket);
        let mut client = pb::exec_service_client::ExecServiceClient::new(channel.clone());
        let probe = tokio::time::timeout(
            AGENT_READY_TIMEOUT,
            client.list_commands(pb::ListCommandsRequest {
                sandbox_id: sandbox_id.to_owned(),
                ..Default::default()
            }),
        );
        // A container that exits first (its agent cannot run, or is killed
        // for memory) fails the start at once instead of at the deadline.
        let mut exits = self.docker.wait_container(
            container,
            Some(WaitContainerOptions {
                condition: "not-running".to_owned(),
            }),
        );
        let probe = tokio::select! {
            probe = probe => probe,
            _ = exits.next() => {
                return Err(self.agent_failure(container, "its container exited").await);
            }
        };
        match probe {
            Ok(Ok(_)) => {
                self.channels
                    .lock()
                    .expect("channels")
                    .insert(sandbox_id.to_owned(), channel);
                Ok(())
            }
            Ok(Err(status)) => Err(self.agent_failure(container, status.message()).await),
            Err(_) => Err(self
                .agent_failure(
                    container,
                    &format!(
                        "no answer within {}",
                        humantime::format_duration(AGENT_READY_TIMEOUT)
                    ),
                )
                .await),
        }
    }

    /// Explains why a container's agent does not answer, from the container's
    /// state and the end of its log.
    async fn agent_failure(&self, container: &str, symptom: &str) -> Error {
        let state = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state);
        let mut log = String::new();
        let mut lines = self.docker.logs(
            container,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: "5".to_owned(),
                ..Default::default()
            }),
        );
        while let Ok(Some(Ok(line))) =
            tokio::time::timeout(Duration::from_secs(2), lines.next()).await
        {
            log.push_str(&String::from_utf8_lossy(&line.into_bytes()));
        }
        let log = log.trim();
        let running = state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let mut message = if running {
            format!("the sandbox's agent does not answer ({symptom})")
        } else {
            format!(
                "the sandbox's container exited{} before its agent answered",
                exit_description(state.as_ref())
            )
        };
        if !log.is_empty() {
            message.push_str(&format!("; its log ends: {log}"));
        }
        Error::unavailable(message)
    }

    fn forget_channel(&self, sandbox_id: &str) {
        self.channels.lock().expect("channels").remove(sandbox_id);
    }

    /// Turns an engine event about one of our containers into an observation
    /// for the domain, after checking the container's state now (events
    /// arrive late; the container may have been started again since).
    async fn observe_event(&self, action: &str, attributes: &HashMap<String, String>) {
        let (Some(sandbox_id), Some(tenant)) = (
            attributes.get(layout::LABEL_SANDBOX_ID),
            attributes.get(layout::LABEL_TENANT),
        ) else {
            return;
        };
        let now = match self.find(sandbox_id).await {
            Ok(now) => now,
            Err(error) => {
                debug!(sandbox_id, %error, "cannot check a container after an event");
                return;
            }
        };
        let observation = match (action, now) {
            ("destroy", None) => Observation::Removed {
                tenant: tenant.clone(),
                sandbox_id: sandbox_id.clone(),
                reason: "its container was removed outside Paddock".to_owned(),
            },
            ("die" | "oom", Some(container)) => {
                let state = container.state.as_ref();
                if state.and_then(|s| s.running).unwrap_or(false) {
                    return;
                }
                self.forget_channel(sandbox_id);
                Observation::Stopped {
                    tenant: tenant.clone(),
                    sandbox_id: sandbox_id.clone(),
                    reason: format!("its container exited{}", exit_description(state)),
                }
            }
            _ => return,
        };
        debug!(?observation, "engine event");
        let _ = self.observations.send(observation);
    }
}

/// Follows the engine's events about Paddock's containers while the provider
/// lives; when the engine goes away, marks the provider unavailable, retries
/// with backoff, and asks the domain to check every sandbox once it is back.
async fn watch_engine(provider: std::sync::Weak<DockerProvider>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(this) = provider.upgrade() else {
            return;
        };
        if !this.engine_available() && !this.check_engine().await {
            drop(this);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
            continue;
        }
        let mut events = this.docker.events(Some(EventsOptions {
            filters: Some(HashMap::from([
                ("type".to_owned(), vec!["container".to_owned()]),
                (
                    "label".to_owned(),
                    vec![format!("{}={}", layout::LABEL_SCOPE, this.settings.scope)],
                ),
                (
                    "event".to_owned(),
                    vec!["die".to_owned(), "oom".to_owned(), "destroy".to_owned()],
                ),
            ])),
            ..Default::default()
        }));
        // Whatever happened while nobody watched is checked now.
        let _ = this.observations.send(Observation::Resync);
        let weak = Arc::downgrade(&this);
        drop(this);
        loop {
            let next = events.next().await;
            let Some(this) = weak.upgrade() else {
                return;
            };
            match next {
                Some(Ok(event)) => {
                    delay = Duration::from_millis(100);
                    let action = event.action.unwrap_or_default();
                    let attributes = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                    this.observe_event(&action, &attributes).await;
                }
                Some(Err(error)) => {
                    this.mark_unreachable(error);
                    break;
                }
                None => {
                    this.mark_unreachable("the event stream ended");
                    break;
                }
            }
        }
        // Back off before trying again, so that an engine that answers pings
        // but breaks event streams is not hammered.
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

fn exit_description(state: Option<&bollard::models::ContainerState>) -> String {
    let Some(state) = state else {
        return String::new();
    };
    let mut text = match state.exit_code {
        Some(code) => format!(" with code {code}"),
        None => String::new(),
    };
    if state.oom_killed == Some(true) {
        text.push_str(" (killed: out of memory)");
    }
    if let Some(error) = state.error.as_deref().filter(|e| !e.is_empty()) {
        text.push_str(&format!(" ({error})"));
    }
    text
}

/// The labels every object of `role` carries.
fn labels_of(scope: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        (layout::LABEL_SCOPE.to_owned(), scope.to_owned()),
        (layout::LABEL_ROLE.to_owned(), role.to_owned()),
    ])
}

/// Whether the engine answered 404.
fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn status_code(error: &bollard::errors::Error) -> Option<u16> {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// An engine failure while `context`, as a domain error: the engine's 4xx
/// answers keep their meaning, everything else means the engine is not
/// usable now.
fn engine_error(context: &str, error: impl Into<EngineFailure>) -> Error {
    let EngineFailure { status, message } = error.into();
    let message = format!("{context}: the Docker engine answered: {message}");
    match status {
        Some(404) => Error::not_found(message),
        Some(409) => Error::new(ErrorKind::FailedPrecondition, message),
        Some(400) => Error::failed_precondition(message),
        _ => Error::unavailable(message),
    }
}

/// An engine error's status (when the engine answered) and text.
struct EngineFailure {
    status: Option<u16>,
    message: String,
}

impl From<bollard::errors::Error> for EngineFailure {
    fn from(error: bollard::errors::Error) -> Self {
        let status = status_code(&error);
        let message = match error {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message,
            other => other.to_string(),
        };
        Self { status, message }
    }
}

#[async_trait]
impl Provider for DockerProvider {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn info(&self) -> ProviderInfo {
        let engine = self.engine.read().expect("engine status").clone();
        let (available, detail) = match (&self.agent, engine.available) {
            (Err(error), _) => (false, format!("{}; {}", engine.detail, error.message())),
            (Ok(_), available) => (available, engine.detail),
        };
        ProviderInfo {
            name: Self::NAME.to_owned(),
            available,
            detail,
            isolation: "container: each sandbox is a container with its own namespaces and \
                cgroup on the engine's runtime; commands run as root inside it; resource \
                limits and network: none are enforced by the engine"
                .to_owned(),
            capabilities: Capabilities {
                tty: true,
                signals: true,
                stop_start: true,
                volumes: true,
                network_none: true,
                resource_limits: true,
                images: true,
                exec: true,
                files: true,
                read_only_root: true,
            },
        }
    }

    async fn prepare(&self, spec: &mut SandboxSpec) -> Result<()> {
        if let Some(memory) = spec.resources.memory_bytes
            && memory < MIN_MEMORY_BYTES
        {
            return Err(Error::invalid_argument(
                "resources.memory_bytes",
                format!(
                    "{memory} is below the Docker engine's minimum of {MIN_MEMORY_BYTES} bytes (6 MiB)"
                ),
            ));
        }
        if let Some(pids) = spec.resources.pids
            && pids < MIN_PIDS
        {
            return Err(Error::invalid_argument(
                "resources.pids",
                format!(
                    "{pids} is too few: the sandbox's agent and its threads count too; ask for at least {MIN_PIDS}"
                ),
            ));
        }
        let cpus = self.engine.read().expect("engine status").cpus;
        if let (Some(millis), Some(cpus)) = (spec.resources.cpu_millis, cpus)
            && millis > u64::try_from(cpus).unwrap_or(0) * 1000
        {
            return Err(Error::failed_precondition(format!(
                "resources.cpu_millis: {millis} asks for more than the engine's {cpus} CPUs ({} millis)",
                cpus * 1000
            )));
        }
        if spec.image.is_none() {
            spec.image = Some(self.settings.default_image.clone().ok_or_else(|| {
                Error::invalid_argument(
                    "image",
                    "provider docker needs an image and this server has no default \
                     (docker_default_image)",
                )
            })?);
        }
        self.ensure_agent().await?;
        let image = spec.image.as_deref().expect("image set above");
        images::ensure(&self.docker, image, self.settings.pull_timeout).await
    }

    #[instrument(name = "provider.docker.create", skip_all, fields(sandbox_id = request.sandbox_id))]
    async fn create(&self, request: ProvisionRequest<'_>) -> Result<String> {
        // A container of this sandbox exists only when an earlier attempt got
        // that far; the engine's name conflict (409) says so without an extra
        // lookup on every create.
        let build = self.ensure_agent().await?;
        let config = self.container_config(&request, build)?;
        let name = Self::container_name(request.sandbox_id)?;
        match self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                config,
            )
            .await
        {
            Ok(created) => {
                debug!(container = %created.id, "sandbox container created");
                if !self.settings.create_delay.is_zero() {
                    tokio::time::sleep(self.settings.create_delay).await;
                }
                Ok(created.id)
            }
            // An earlier attempt, or a concurrent retry, made it first.
            Err(e) if status_code(&e) == Some(409) => match self.find(request.sandbox_id).await? {
                Some(existing) => Ok(existing.id.unwrap_or_default()),
                None => Err(engine_error("creating a sandbox container", e)),
            },
            Err(e) => Err(engine_error("creating a sandbox container", e)),
        }
    }

    #[instrument(name = "provider.docker.start", skip(self))]
    async fn start(&self, sandbox_id: &str) -> Result<()> {
        let name = Self::container_name(sandbox_id)?;
        self.forget_channel(sandbox_id);
        // Where the agent's socket will be is known from the created
        // container: look it up while the engine starts it.
        let (started, socket) = tokio::join!(
            self.docker.start_container(&name, None),
            self.local_socket(&name)
        );
        match started {
            Ok(()) => {}
            // 304: already running.
            Err(e) if status_code(&e) == Some(304) => {}
            Err(e) if is_not_found(&e) => {
                return Err(Error::not_found(format!(
                    "the container of sandbox {sandbox_id} is gone"
                )));
            }
            Err(e) => return Err(engine_error("starting a sandbox container", e)),
        }
        let ready = self.wait_for_agent(sandbox_id, &name, socket).await;
        if ready.is_err() {
            // The agent volume may have been removed behind our back: check
            // it again before the next create.
            *self.agent_installed.lock().await = false;
        }
        ready
    }

    #[instrument(name = "provider.docker.stop", skip(self))]
    async fn stop(&self, sandbox_id: &str) -> Result<()> {
        let name = Self::container_name(sandbox_id)?;
        self.forget_channel(sandbox_id);
        match self
            .docker
            .stop_container(
                &name,
                Some(StopContainerOptions {
                    t: Some(STOP_GRACE_SECONDS),
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_code(&e) == Some(304) => Ok(()),
            Err(e) if is_not_found(&e) => Err(Error::not_found(format!(
                "the container of sandbox {sandbox_id} is gone"
            ))),
            Err(e) => Err(engine_error("stopping a sandbox container", e)),
        }
    }

    #[instrument(name = "provider.docker.delete", skip(self))]
    async fn delete(&self, sandbox_id: &str) -> Result<()> {
        let name = Self::container_name(sandbox_id)?;
        self.forget_channel(sandbox_id);
        match self
            .docker
            .remove_container(
                &name,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // 409: a removal is already under way.
            Err(e) if status_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(engine_error("removing a sandbox container", e)),
        }
    }

    async fn inspect(&self, sandbox_id: &str) -> Result<Option<Observed>> {
        Ok(self.find(sandbox_id).await?.map(|container| Observed {
            sandbox_id: sandbox_id.to_owned(),
            provider_ref: container.id.unwrap_or_default(),
            running: container.state.and_then(|s| s.running).unwrap_or(false),
        }))
    }

    async fn connect(&self, sandbox_id: &str) -> Result<Channel> {
        if let Some(channel) = self.channels.lock().expect("channels").get(sandbox_id) {
            return Ok(channel.clone());
        }
        let name = Self::container_name(sandbox_id)?;
        let channel = self.new_channel(&name).await;
        Ok(self
            .channels
            .lock()
            .expect("channels")
            .entry(sandbox_id.to_owned())
            .or_insert(channel)
            .clone())
    }

    async fn list(&self) -> Result<Vec<Observed>> {
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "label".to_owned(),
                    vec![format!("{}={}", layout::LABEL_SCOPE, self.settings.scope)],
                )])),
                ..Default::default()
            }))
            .await
            .map_err(|e| engine_error("listing sandbox containers", e))?;
        let mut found = Vec::new();
        for container in containers {
            let labels = container.labels.unwrap_or_default();
            let role = labels.get(layout::LABEL_ROLE).map(String::as_str);
            if role == Some(layout::ROLE_AGENT_CHECK) {
                // Left by a server that crashed while checking the agent.
                if let Some(id) = &container.id {
                    let _ = self
                        .docker
                        .remove_container(
                            id,
                            Some(RemoveContainerOptions {
                                force: true,
                                ..Default::default()
                            }),
                        )
                        .await;
                }
                continue;
            }
            let Some(sandbox_id) = labels.get(layout::LABEL_SANDBOX_ID) else {
                continue;
            };
            found.push(Observed {
                sandbox_id: sandbox_id.clone(),
                provider_ref: container.id.unwrap_or_default(),
                running: container.state.as_ref().is_some_and(|s| {
                    matches!(s, bollard::models::ContainerSummaryStateEnum::RUNNING)
                }),
            });
        }
        Ok(found)
    }

    fn observe(&self) -> Option<broadcast::Receiver<Observation>> {
        Some(self.observations.subscribe())
    }
}
