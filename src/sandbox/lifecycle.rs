//! A sandbox's life after its create: update, stop, start and delete, each a
//! compare-and-set on the record around the provider's work.

use tracing::instrument;

use super::manager::{advance, detached, expect_state, state_error};
use super::state::Step;
use super::{EventType, Manager, Sandbox, SandboxState, SandboxUpdate, TimeoutUpdate};
use crate::clock;
use crate::error::{Error, Result};

impl Manager {
    /// Changes labels, metadata or lifetime.
    #[instrument(name = "sandbox.update", skip(self, update))]
    pub async fn update(&self, tenant: &str, id: &str, update: SandboxUpdate) -> Result<Sandbox> {
        let now = clock::now();
        let expires_at = match update.timeout {
            None => None,
            Some(TimeoutUpdate::ExpireIn(d)) => Some(self.expiry(now, Some(d), "timeout")?),
            Some(TimeoutUpdate::Never) => {
                if let Some(max) = self.config().max_timeout {
                    return Err(Error::invalid_argument(
                        "timeout",
                        format!(
                            "must be set: this server limits lifetimes to {}",
                            humantime::format_duration(max)
                        ),
                    ));
                }
                Some(None)
            }
        };
        self.modify(tenant, id, |current| {
            current
                .state
                .plan_update()
                .map_err(|rule| state_error(current, rule))?;
            let mut next = current.clone();
            if let Some(labels) = &update.labels {
                next.labels = labels.clone();
            }
            if let Some(metadata) = &update.metadata {
                next.metadata = metadata.clone();
            }
            if let Some(expires_at) = expires_at {
                next.expires_at = expires_at;
            }
            next.updated_at = clock::now();
            Ok((next, EventType::Updated))
        })
        .await
    }

    /// Stops a RUNNING sandbox; `reason` becomes its state reason.
    #[instrument(name = "sandbox.stop", skip(self))]
    pub async fn stop(&self, tenant: &str, id: &str, reason: &str) -> Result<Sandbox> {
        let current = self.get(tenant, id).await?;
        match current.state.plan_stop() {
            Err(rule) => return Err(state_error(&current, rule)),
            Ok(Step::AlreadyDone) => return Ok(current),
            Ok(Step::Proceed) => {}
        }
        let stopping = match self
            .transition(
                &current,
                SandboxState::Running,
                SandboxState::Stopping,
                reason,
            )
            .await
        {
            Ok(stopping) => stopping,
            Err(error) => {
                // It may have stopped by itself meanwhile (an engine event):
                // then there is nothing left to do.
                let now = self.get(tenant, id).await?;
                return match now.state {
                    SandboxState::Stopped => Ok(now),
                    _ => Err(error),
                };
            }
        };
        let manager = self.clone();
        let reason = reason.to_owned();
        detached(async move { manager.finish_stop(stopping, &reason).await }).await
    }

    /// Takes a STOPPING sandbox to STOPPED, or to FAILED when the provider
    /// cannot stop it.
    pub(super) async fn finish_stop(&self, sandbox: Sandbox, reason: &str) -> Result<Sandbox> {
        let provider = self.providers().get(&sandbox.provider)?.clone();
        match self.call("provider.stop", provider.stop(&sandbox.id)).await {
            Ok(()) => {
                self.transition(
                    &sandbox,
                    SandboxState::Stopping,
                    SandboxState::Stopped,
                    reason,
                )
                .await
            }
            Err(error) => {
                let reason = format!("stopping failed: {error}");
                self.transition(
                    &sandbox,
                    SandboxState::Stopping,
                    SandboxState::Failed,
                    &reason,
                )
                .await
            }
        }
    }

    /// Starts a STOPPED sandbox again.
    #[instrument(name = "sandbox.start", skip(self))]
    pub async fn start(&self, tenant: &str, id: &str) -> Result<Sandbox> {
        let began = std::time::Instant::now();
        let current = self.get(tenant, id).await?;
        match current.state.plan_start() {
            Err(rule) => return Err(state_error(&current, rule)),
            Ok(Step::AlreadyDone) => return Ok(current),
            Ok(Step::Proceed) => {}
        }
        let counted = self.count_running(tenant).await?;
        let starting = self
            .transition(&current, SandboxState::Stopped, SandboxState::Starting, "")
            .await?;
        drop(counted);
        let manager = self.clone();
        let started = detached(async move { manager.finish_start(starting).await }).await?;
        if started.state == SandboxState::Running {
            self.metrics()
                .sandbox_started(&started.provider, began.elapsed());
        }
        Ok(started)
    }

    /// Takes a STARTING sandbox whose object exists to RUNNING, or to FAILED.
    pub(super) async fn finish_start(&self, sandbox: Sandbox) -> Result<Sandbox> {
        let provider = self.providers().get(&sandbox.provider)?.clone();
        match self
            .call("provider.start", provider.start(&sandbox.id))
            .await
        {
            Ok(agent) => {
                self.agent_clients().remember(&sandbox.id, agent);
                self.modify(&sandbox.tenant, &sandbox.id, |current| {
                    expect_state(current, SandboxState::Starting)?;
                    let now = clock::now();
                    let mut next = advance(current, SandboxState::Running, "")?;
                    next.started_at = Some(now);
                    next.last_activity_at = now;
                    Ok((next, EventType::StateChanged))
                })
                .await
            }
            Err(error) => {
                let reason = format!("starting failed: {error}");
                self.transition(
                    &sandbox,
                    SandboxState::Starting,
                    SandboxState::Failed,
                    &reason,
                )
                .await
            }
        }
    }

    /// Deletes a sandbox: its provider object goes, its record stays DELETED.
    #[instrument(name = "sandbox.delete", skip(self))]
    pub async fn delete(&self, tenant: &str, id: &str, reason: &str) -> Result<Sandbox> {
        let current = self.get(tenant, id).await?;
        match current.state.plan_delete() {
            Err(rule) => return Err(state_error(&current, rule)),
            Ok(Step::AlreadyDone) => return Ok(current),
            Ok(Step::Proceed) => {}
        }
        let deleting = if current.state == SandboxState::Deleting {
            current
        } else {
            let from = current.state;
            self.transition(&current, from, SandboxState::Deleting, reason)
                .await?
        };
        let manager = self.clone();
        let reason = reason.to_owned();
        detached(async move { manager.finish_delete(deleting, &reason).await }).await
    }

    /// Takes a DELETING sandbox to DELETED. When the provider fails, the
    /// sandbox stays DELETING, so that a retry or the next start-up finishes.
    pub(super) async fn finish_delete(&self, sandbox: Sandbox, reason: &str) -> Result<Sandbox> {
        let provider = self.providers().get(&sandbox.provider)?.clone();
        self.call("provider.delete", provider.delete(&sandbox.id))
            .await?;
        self.transition(
            &sandbox,
            SandboxState::Deleting,
            SandboxState::Deleted,
            reason,
        )
        .await
    }

    /// Notes that a caller used the sandbox, for its idle timeout.
    pub async fn record_activity(&self, id: &str) -> Result<()> {
        self.store().record_activity(id, clock::now()).await
    }
}
