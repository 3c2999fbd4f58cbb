//! A running sandbox's resource use ([`SandboxUsage`]): what its provider
//! measures, with the CPU share worked out between two measurements.

use std::time::{Duration, Instant, SystemTime};

use super::{Manager, Resources, Sandbox, SandboxState};
use crate::clock;
use crate::error::{Error, Result};
use crate::provider::Usage;
use crate::store::SandboxQuery;

/// The window of a CPU share measured afresh.
const SHARE_WINDOW_FRESH: Duration = Duration::from_millis(250);

/// A running sandbox's resource use at one moment.
#[derive(Debug, Clone)]
pub struct SandboxUsage {
    /// The sandbox measured.
    pub sandbox_id: String,
    /// Its provider's name.
    pub provider: String,
    /// When.
    pub time: SystemTime,
    /// What its provider measured.
    pub usage: Usage,
    /// Cores in use on average over `cpu_window`.
    pub cpu_share: f64,
    /// The time `cpu_share` is averaged over.
    pub cpu_window: Duration,
    /// The limits it was created with.
    pub limits: Resources,
}

impl Manager {
    /// What the tenant's RUNNING sandbox `id` uses now. FAILED_PRECONDITION
    /// in any other state.
    pub async fn usage(&self, tenant: &str, id: &str) -> Result<SandboxUsage> {
        let sandbox = self.get(tenant, id).await?;
        self.measure(&sandbox).await
    }

    /// The RUNNING sandboxes of every tenant, newest first, at most
    /// `limit`.
    pub async fn running(&self, limit: usize) -> Result<Vec<Sandbox>> {
        self.store()
            .list_sandboxes(&SandboxQuery {
                states: vec![SandboxState::Running],
                limit,
                ..SandboxQuery::default()
            })
            .await
    }

    /// What the RUNNING `sandbox` uses now, by one measurement (no CPU
    /// share, which takes two).
    pub async fn measure_once(&self, sandbox: &Sandbox) -> Result<Usage> {
        if sandbox.state != SandboxState::Running {
            return Err(Error::failed_precondition(format!(
                "sandbox {} is {}; its use is measured while it is RUNNING",
                sandbox.id, sandbox.state
            )));
        }
        let provider = self.providers().get(&sandbox.provider)?.clone();
        self.call("provider.usage", provider.usage(&sandbox.id))
            .await
    }

    /// What the RUNNING `sandbox` uses now, with its CPU share since this
    /// server last measured it (or over a quarter of a second).
    pub async fn measure(&self, sandbox: &Sandbox) -> Result<SandboxUsage> {
        let measure = || self.measure_once(sandbox);
        let mut usage = measure().await?;
        let mut now = Instant::now();
        let (since, before) = match self.cpu_samples().swap(&sandbox.id, (now, usage.cpu_time)) {
            Some(earlier) if now - earlier.0 >= SHARE_WINDOW_FRESH / 2 => earlier,
            _ => {
                // No measurement to compare with: take a second one.
                let first = (now, usage.cpu_time);
                tokio::time::sleep(SHARE_WINDOW_FRESH).await;
                usage = measure().await?;
                now = Instant::now();
                self.cpu_samples().swap(&sandbox.id, (now, usage.cpu_time));
                first
            }
        };
        let window = now - since;
        let used = usage.cpu_time.saturating_sub(before);
        Ok(SandboxUsage {
            sandbox_id: sandbox.id.clone(),
            provider: sandbox.provider.clone(),
            time: clock::now(),
            cpu_share: used.as_secs_f64() / window.as_secs_f64().max(1e-9),
            cpu_window: window,
            usage,
            limits: sandbox.spec.resources,
        })
    }
}
