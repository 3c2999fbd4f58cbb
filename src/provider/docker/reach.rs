//! Reaching a container's agent: straight through its socket when the
//! engine is local, through an exec bridge otherwise; and waiting for it to
//! answer after a start.

use std::path::PathBuf;
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, LogsOptions, WaitContainerOptions};
use futures::StreamExt;
use tracing::debug;

use super::engine::exit_description;
use super::{AgentTransport, DockerProvider, bridge, layout};
use crate::agent_client::{AgentChannel, AgentClient};
use crate::error::{Error, Result};

/// How long a started container's agent may take to answer.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(20);

impl DockerProvider {
    /// A new channel to the agent of `container`: straight to its socket
    /// when that is visible here (see [`AgentTransport::Auto`]), through an
    /// exec bridge otherwise.
    pub(super) async fn new_channel(&self, container: &str) -> AgentChannel {
        self.channel_to(container, self.local_socket(container).await)
    }

    /// A channel to the agent of `container` through `socket` when there is
    /// one (see [`DockerProvider::local_socket`]), through a bridge otherwise.
    fn channel_to(&self, container: &str, socket: Option<PathBuf>) -> AgentChannel {
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
    pub(super) async fn local_socket(&self, container: &str) -> Option<PathBuf> {
        if !self.sockets_reachable() {
            return None;
        }
        let inspected = self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .ok()?;
        self.socket_of(&inspected)
    }

    /// Whether agents' sockets may be reached from here at all: the
    /// transport allows it and the engine is local.
    fn sockets_reachable(&self) -> bool {
        self.settings.transport == AgentTransport::Auto && self.address.starts_with("unix://")
    }

    /// Where the agent's socket of the `inspected` container is on this
    /// host (see [`DockerProvider::local_socket`]).
    pub(super) fn socket_of(&self, inspected: &ContainerInspectResponse) -> Option<PathBuf> {
        if !self.sockets_reachable() {
            return None;
        }
        // A sandboxing runtime (gVisor, Kata) keeps the agent's socket inside
        // its sandbox, out of the host's reach even where the file shows.
        let runtime = inspected
            .host_config
            .as_ref()
            .and_then(|h| h.runtime.as_deref())
            .unwrap_or("runc");
        if super::prepare::is_sandboxing(runtime) {
            return None;
        }
        let source = inspected
            .mounts
            .as_ref()?
            .iter()
            .find(|m| m.destination.as_deref() == Some(layout::STATE_DIR))?
            .source
            .as_ref()?;
        let socket = PathBuf::from(source).join(layout::AGENT_SOCKET_NAME);
        // A Unix socket path holds at most 107 bytes; a data root deeper than
        // Docker's default can make it longer, and then only the bridge works.
        let fits = socket.as_os_str().len() < 108;
        (fits && std::fs::read_dir(socket.parent()?).is_ok()).then_some(socket)
    }

    /// Waits until the agent of a started container answers through a new
    /// channel (through `socket`, see [`DockerProvider::local_socket`]), and
    /// returns that channel.
    pub(super) async fn wait_for_agent(
        &self,
        sandbox_id: &str,
        container: &str,
        socket: Option<PathBuf>,
    ) -> Result<AgentChannel> {
        let channel = self.channel_to(container, socket);
        let agent = AgentClient::new(channel.clone());
        let probe = tokio::time::timeout(AGENT_READY_TIMEOUT, agent.answers(sandbox_id));
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
            Ok(Ok(())) => Ok(channel),
            Ok(Err(error)) => Err(self.agent_failure(container, error.message()).await),
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
}
