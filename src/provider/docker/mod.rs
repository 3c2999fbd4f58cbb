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

mod admission;
mod agent_volume;
mod allow_list;
mod bridge;
mod builds;
mod egress;
mod engine;
mod errors;
mod images;
mod layout;
mod networks;
mod open;
mod prepare;
mod reach;
mod rules_status;
mod spec;
mod usage;
mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use tokio::sync::broadcast;
use tracing::{debug, info, instrument};

use super::contract::{
    AgentLaunch, BuildContext, Capabilities, ImageBuild, Observation, Observed, Provider,
    ProviderInfo, ProvisionRequest, Usage,
};
use crate::agent_client::AgentChannel;
use crate::error::{Error, Result};
use crate::sandbox::SandboxSpec;
use agent_volume::AgentBuild;
use errors::{engine_error, is_not_found, status_code};

/// The smallest memory limit the engine accepts.
const MIN_MEMORY_BYTES: u64 = 6 << 20;
/// The smallest process limit that leaves room for the agent's threads and
/// a command.
const MIN_PIDS: u64 = 8;

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
    /// The ranges EGRESS and ALLOW_LIST sandboxes may not reach.
    pub egress_blocked: Vec<crate::sandbox::network::Ipv4Cidr>,
    /// The DNS servers that resolve ALLOW_LIST sandboxes' allowed names;
    /// empty: the host's (its resolv.conf's).
    pub allow_list_dns: Vec<std::net::SocketAddr>,
    /// The runtime of sandboxes whose request names none; `None`: the
    /// engine's default.
    pub runtime: Option<String>,
    /// The other runtimes requests may name.
    pub runtimes: Vec<String>,
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
    /// The runtimes registered with the engine, its default first.
    runtimes: Vec<String>,
}

/// Sandboxes as containers on a Docker engine.
pub struct DockerProvider {
    docker: Docker,
    /// The engine's socket when it did not exist at start-up: the provider
    /// is unavailable for this server's life.
    missing_socket: Option<String>,
    settings: DockerSettings,
    address: String,
    /// The agent build, or why there is none usable.
    agent: std::result::Result<AgentBuild, Error>,
    /// Serialises installing the agent; true once installed by this server.
    agent_installed: tokio::sync::Mutex<bool>,
    engine: RwLock<EngineStatus>,
    egress: egress::Egress,
    allow_list: allow_list::AllowList,
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
}

/// The words that say a network mode cannot be enforced now.
fn cannot_now(failing: bool) -> &'static str {
    if failing {
        ", which this server cannot enforce now (see detail)"
    } else {
        ""
    }
}

#[async_trait]
impl Provider for DockerProvider {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tty: true,
            signals: true,
            stop_start: true,
            volumes: true,
            network_none: true,
            network_egress: self.egress.failure().is_none(),
            network_bridge: true,
            network_allow_list: self.allow_list.failure().is_none(),
            resource_limits: true,
            images: true,
            exec: true,
            files: true,
            port_forward: true,
            read_only_root: true,
            template_builds: true,
            snapshots: true,
        }
    }

    async fn info(&self) -> ProviderInfo {
        let engine = self.engine.read().expect("engine status").clone();
        let (available, mut detail) = match (&self.agent, engine.available) {
            (Err(error), _) => (false, format!("{}; {}", engine.detail, error.message())),
            (Ok(_), available) => (available, engine.detail),
        };
        if let Some(why) = self.egress.failure() {
            detail.push_str(&format!("; NETWORK_MODE_EGRESS cannot be enforced: {why}"));
        }
        if let Some(why) = self.allow_list.failure() {
            detail.push_str(&format!(
                "; NETWORK_MODE_ALLOW_LIST cannot be enforced: {why}"
            ));
        }
        ProviderInfo {
            name: Self::NAME.to_owned(),
            available,
            detail,
            isolation: format!(
                "container: each sandbox is a container with its own namespaces and cgroup on \
                 the engine's runtime; commands run as root inside it with only the \
                 capabilities {} (every other dropped), no-new-privileges, the engine's default \
                 seccomp profile and its masked /proc and /sys paths; CPU, memory and process \
                 limits by the engine (the server's defaults when a request sets none); \
                 networks: NONE (loopback only), EGRESS (the default: the internet, never \
                 another sandbox, the host or a blocked range){}, ALLOW_LIST (only the \
                 allowed hosts, by IPv4 range or by a name this server resolves){}",
                layout::KEPT_CAPABILITIES.join(", "),
                cannot_now(self.egress.failure().is_some()),
                cannot_now(self.allow_list.failure().is_some()),
            ),
            capabilities: self.capabilities(),
            runtimes: self.offered_runtimes(),
        }
    }

    async fn prepare(&self, spec: &mut SandboxSpec) -> Result<()> {
        self.prepare_spec(spec).await
    }

    async fn create_volume(&self, volume_id: &str, tenant: &str) -> Result<()> {
        self.make_volume(volume_id, tenant).await
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<()> {
        self.remove_volume(volume_id).await
    }

    async fn build_image(
        &self,
        build: ImageBuild,
        context: BuildContext,
        log: tokio::sync::mpsc::Sender<String>,
    ) -> Result<()> {
        self.build(build, context, log).await
    }

    async fn snapshot(&self, sandbox_id: &str, tag: &str) -> Result<()> {
        self.commit(sandbox_id, tag).await
    }

    async fn remove_image(&self, tag: &str) -> Result<()> {
        self.remove_template_image(tag).await
    }

    #[instrument(name = "provider.docker.create", skip_all, fields(sandbox_id = request.sandbox_id))]
    async fn create(&self, request: ProvisionRequest<'_>) -> Result<String> {
        // A container of this sandbox exists only when an earlier attempt got
        // that far; the engine's name conflict (409) says so without an extra
        // lookup on every create.
        let build = self.ensure_agent().await?;
        let config = spec::container_spec(
            &request,
            &self.settings.agent,
            &self.settings.scope,
            &build.volume,
        )?;
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
    async fn start(&self, sandbox_id: &str) -> Result<AgentChannel> {
        let name = Self::container_name(sandbox_id)?;
        // Where the agent's socket will be, and the network, are known from
        // the created container: look them up while the engine starts it.
        let (started, created) = tokio::join!(
            self.docker.start_container(&name, None),
            self.docker
                .inspect_container(&name, None::<InspectContainerOptions>)
        );
        let created = created.ok();
        let socket = created.as_ref().and_then(|c| self.socket_of(c));
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
        // An ALLOW_LIST sandbox's rules are in place before the start
        // returns, so before any command of the caller runs in it. When the
        // look-up failed, the container may be one: admission finds out.
        let ready = if created.as_ref().is_none_or(allow_list::joins) {
            let (ready, admitted) = tokio::join!(
                self.wait_for_agent(sandbox_id, &name, socket),
                self.admit_to_allow_list(&name)
            );
            admitted?;
            ready
        } else {
            self.wait_for_agent(sandbox_id, &name, socket).await
        };
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
        // Before the container lets its address go to another sandbox.
        self.allow_list.release(sandbox_id).await;
        match self
            .docker
            .stop_container(
                &name,
                Some(StopContainerOptions {
                    t: Some(spec::STOP_GRACE_SECONDS),
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
        self.allow_list.release(sandbox_id).await;
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

    async fn usage(&self, sandbox_id: &str) -> Result<Usage> {
        self.measure(sandbox_id).await
    }

    async fn connect(&self, sandbox_id: &str) -> Result<AgentChannel> {
        let name = Self::container_name(sandbox_id)?;
        Ok(self.new_channel(&name).await)
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
