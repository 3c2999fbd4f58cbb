//! The engine's health and events: whether it answers, and what happened to
//! Paddock's containers without Paddock asking.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use tracing::{debug, info, warn};

use super::layout;
use super::{DockerProvider, EngineStatus};
use crate::provider::contract::Observation;

/// How long the engine may take to answer at start-up and in health checks.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between attempts to reach an engine that went away.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);
/// How often the EGRESS and ALLOW_LIST firewall rules are checked besides
/// every create.
pub(super) const NETWORK_CHECK_INTERVAL: Duration = super::allow_list::KEEP_INTERVAL;

impl DockerProvider {
    /// Follows the engine's events about Paddock's containers while the provider
    /// lives; when the engine goes away, marks the provider unavailable, retries
    /// with backoff, and asks the domain to check every sandbox once it is back.
    pub(super) async fn watch_engine(provider: std::sync::Weak<Self>) {
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

    /// Whether the engine answered the last check.
    pub fn engine_available(&self) -> bool {
        self.engine.read().expect("engine status").available
    }

    /// Pings the engine, negotiating the API version, and records the answer.
    pub(super) async fn check_engine(&self) -> bool {
        if let Some(socket) = &self.missing_socket {
            *self.engine.write().unwrap_or_else(|p| p.into_inner()) = EngineStatus {
                available: false,
                detail: format!(
                    "no Docker engine: its socket {socket} did not exist when Paddock started; \
                     start the engine (or point --docker-host at one) and restart Paddock"
                ),
                cpus: None,
                runtimes: Vec::new(),
            };
            return false;
        }
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
                runtimes: {
                    let default = info.default_runtime.clone().unwrap_or_default();
                    let mut names: Vec<String> = info
                        .runtimes
                        .as_ref()
                        .map(|r| r.keys().filter(|n| **n != default).cloned().collect())
                        .unwrap_or_default();
                    names.sort();
                    names.insert(0, default);
                    names
                },
            },
            Ok(Err(e)) => EngineStatus {
                available: false,
                detail: format!("the Docker engine at {} does not answer: {e}", self.address),
                cpus: None,
                runtimes: Vec::new(),
            },
            Err(_) => EngineStatus {
                available: false,
                detail: format!(
                    "the Docker engine at {} did not answer within {}",
                    self.address,
                    humantime::format_duration(PING_TIMEOUT)
                ),
                cpus: None,
                runtimes: Vec::new(),
            },
        };
        let available = status.available;
        {
            let mut current = self.engine.write().expect("engine status");
            if current.available != available || current.detail != status.detail {
                info!(available, detail = %status.detail, "Docker engine status");
            }
            *current = status;
        }
        if available {
            // Only recorded here: creates that need EGRESS or ALLOW_LIST
            // check again.
            let _ = self.egress.ensure(&self.docker).await;
            let _ = self.allow_list.ensure(&self.docker).await;
        }
        available
    }

    /// Checks the EGRESS and ALLOW_LIST rules every
    /// [`NETWORK_CHECK_INTERVAL`] while the provider lives, putting back what
    /// something else removed (a firewall reload) before a sandbox can use
    /// the gap for long; admits running ALLOW_LIST sandboxes (after a
    /// restart) and removes the rules no sandbox needs any more.
    pub(super) async fn keep_network_rules(provider: std::sync::Weak<Self>) {
        loop {
            tokio::time::sleep(NETWORK_CHECK_INTERVAL).await;
            let Some(this) = provider.upgrade() else {
                return;
            };
            if this.engine_available() {
                let _ = this.egress.ensure(&this.docker).await;
                this.keep_allow_list().await;
            }
        }
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
            runtimes: current.runtimes.clone(),
        };
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

pub(super) fn exit_description(state: Option<&bollard::models::ContainerState>) -> String {
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
