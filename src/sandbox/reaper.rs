//! The reaper: deletes sandboxes whose lifetime ran out and stops idle ones.

use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::lease::Lease;
use super::{Manager, Sandbox, SandboxState};
use crate::clock;
use crate::error::Result;
use crate::telemetry::ReapCause;

/// The most sandboxes handled in one pass.
const BATCH: usize = 100;

/// Runs the reaper every `interval` while this server holds `lease`, until
/// the task is aborted. An idle sandbox whose agent still runs a command is
/// not stopped.
pub fn spawn_reaper(manager: Manager, interval: Duration, lease: Lease) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if !lease.held() {
                continue;
            }
            if let Err(error) = manager.reap_once().await {
                warn!(error = %error, "reaper pass failed");
            }
        }
    })
}

impl Manager {
    /// One reaper pass; returns how many sandboxes it acted on.
    pub async fn reap_once(&self) -> Result<usize> {
        let now = clock::now();
        let due = self.store().list_due(now, BATCH).await?;
        let count = due.len();
        for sandbox in due {
            let outcome = if sandbox.expires_at.is_some_and(|at| at <= now) {
                self.metrics().reaped(ReapCause::Lifetime);
                info!(sandbox_id = %sandbox.id, "lifetime ran out; deleting");
                self.delete(
                    &sandbox.tenant,
                    &sandbox.id,
                    "its lifetime (timeout) ran out",
                )
                .await
            } else if self.is_busy(&sandbox.tenant, &sandbox.id).await {
                // Work under way counts as activity.
                self.metrics().reaped(ReapCause::Busy);
                self.record_activity(&sandbox.id)
                    .await
                    .map(|()| sandbox.clone())
            } else {
                self.metrics().reaped(ReapCause::Idle);
                info!(sandbox_id = %sandbox.id, "idle timeout reached; stopping");
                self.stop(&sandbox.tenant, &sandbox.id, &idle_reason(&sandbox))
                    .await
            };
            if let Err(error) = outcome {
                warn!(sandbox_id = %sandbox.id, error = %error, "reaper could not act on a sandbox");
            }
        }
        Ok(count)
    }
}

impl Manager {
    /// Whether a sandbox is at work in ways the API does not see: a
    /// detached command still running. An agent that cannot be reached is
    /// not busy.
    async fn is_busy(&self, tenant: &str, sandbox_id: &str) -> bool {
        match self.running_agent(tenant, sandbox_id).await {
            Ok(agent) => agent.is_busy(sandbox_id).await,
            Err(_) => false,
        }
    }
}

fn idle_reason(sandbox: &Sandbox) -> String {
    let idle = sandbox.spec.idle_timeout.unwrap_or(Duration::ZERO);
    debug_assert_eq!(sandbox.state, SandboxState::Running);
    format!(
        "stopped after {} without activity (idle_timeout)",
        humantime::format_duration(idle)
    )
}
