//! Start-up reconciliation: after a crash, finish or fail every sandbox left
//! mid-transition and remove provider objects that no live record owns.

use std::collections::HashSet;

use tokio::sync::broadcast;
use tracing::{info, warn};

use super::lease::Lease;
use super::{Manager, Sandbox, SandboxState};
use crate::error::{Error, Result};
use crate::provider::Observation;
use crate::store::SandboxQuery;

/// How many records one store read fetches.
const PAGE: usize = 500;

/// What reconciliation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Sandboxes taken out of a transient state (finished or failed).
    pub settled: usize,
    /// RUNNING or STOPPED sandboxes whose object had vanished, now FAILED.
    pub vanished: usize,
    /// RUNNING or STOPPED sandboxes whose object was brought back in line.
    pub realigned: usize,
    /// Provider objects with no live record, removed.
    pub orphans_removed: usize,
}

impl Manager {
    /// Brings records and provider objects back in line. Run it before
    /// serving requests: it assumes no other lifecycle step is under way on
    /// this server.
    pub async fn reconcile(&self) -> Result<ReconcileReport> {
        let mut report = ReconcileReport::default();
        for sandbox in self.all_in(&SandboxState::TRANSIENT).await? {
            self.settle(sandbox).await;
            report.settled += 1;
        }
        for sandbox in self
            .all_in(&[SandboxState::Running, SandboxState::Stopped])
            .await?
        {
            match self.realign(&sandbox).await {
                Ok(Realigned::AsExpected) => {}
                Ok(Realigned::Vanished) => report.vanished += 1,
                Ok(Realigned::Corrected) => report.realigned += 1,
                Err(error) => {
                    warn!(sandbox_id = %sandbox.id, error = %error, "cannot check a sandbox's object")
                }
            }
        }
        let live: HashSet<String> = self
            .all_in(
                &SandboxState::ALL
                    .into_iter()
                    .filter(|s| *s != SandboxState::Deleted)
                    .collect::<Vec<_>>(),
            )
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        for provider in self.providers().all() {
            let objects = match self.call("provider.list", provider.list()).await {
                Ok(objects) => objects,
                Err(error) => {
                    warn!(provider = provider.name(), error = %error, "cannot list provider objects");
                    continue;
                }
            };
            for object in objects {
                if !live.contains(&object.sandbox_id) {
                    info!(provider = provider.name(), sandbox_id = %object.sandbox_id, "removing orphan");
                    self.remove_quietly(provider.as_ref(), &object.sandbox_id)
                        .await;
                    report.orphans_removed += 1;
                }
            }
        }
        info!(?report, "reconciliation done");
        Ok(report)
    }

    /// Follows every provider's observations (engine events) in background
    /// tasks, bringing records in line with what happened: a sandbox whose
    /// object stopped by itself becomes STOPPED with the reason, one whose
    /// object was removed by someone else FAILED, and after a gap in the
    /// observations every sandbox of the provider is checked again. Only
    /// while this server holds `lease`: on gaining it, every sandbox is
    /// checked, since what happened before was another server's to apply.
    pub fn spawn_observers(&self, lease: Lease) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for provider in self.providers().all() {
            let Some(mut observations) = provider.observe() else {
                continue;
            };
            let manager = self.clone();
            let name = provider.name().to_owned();
            let mut lease = lease.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let observation = tokio::select! {
                        received = observations.recv() => match received {
                            Ok(observation) => observation,
                            Err(broadcast::error::RecvError::Lagged(missed)) => {
                                warn!(provider = %name, missed, "observations were missed; checking every sandbox");
                                Observation::Resync
                            }
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                        // What happened while another server held the
                        // lease was its to apply; whatever it missed is
                        // found by checking every sandbox.
                        true = lease.gained() => Observation::Resync,
                    };
                    if !lease.held() {
                        continue;
                    }
                    if let Err(error) = manager.apply_observation(&name, observation).await {
                        warn!(provider = %name, %error, "cannot apply a provider observation");
                    }
                }
            }));
        }
        tasks
    }

    /// The record an observation is about, found by id alone: the tenant
    /// its object was labelled with is the one it was made for, which a
    /// warm sandbox's claim changed since.
    async fn observed(&self, sandbox_id: &str) -> Result<Sandbox> {
        self.store()
            .get_sandbox_of_any_tenant(sandbox_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no sandbox has id {sandbox_id:?}")))
    }

    async fn apply_observation(&self, provider: &str, observation: Observation) -> Result<()> {
        match observation {
            Observation::Stopped {
                sandbox_id, reason, ..
            } => {
                let sandbox = self.observed(&sandbox_id).await?;
                if sandbox.state == SandboxState::Running {
                    info!(%sandbox_id, %reason, "sandbox stopped by itself");
                    self.transition(
                        &sandbox,
                        SandboxState::Running,
                        SandboxState::Stopped,
                        &reason,
                    )
                    .await?;
                }
            }
            Observation::Removed {
                sandbox_id, reason, ..
            } => {
                let sandbox = self.observed(&sandbox_id).await?;
                if matches!(sandbox.state, SandboxState::Running | SandboxState::Stopped) {
                    info!(%sandbox_id, %reason, "sandbox's object removed by someone else");
                    self.transition(&sandbox, sandbox.state, SandboxState::Failed, &reason)
                        .await?;
                }
            }
            Observation::Resync => {
                for sandbox in self
                    .all_in(&[SandboxState::Running, SandboxState::Stopped])
                    .await?
                    .into_iter()
                    .filter(|s| s.provider == provider)
                {
                    if let Err(error) = self.realign(&sandbox).await {
                        warn!(sandbox_id = %sandbox.id, %error, "cannot check a sandbox's object");
                    }
                }
            }
        }
        Ok(())
    }

    /// Every record, of every tenant, in one of `states`.
    async fn all_in(&self, states: &[SandboxState]) -> Result<Vec<Sandbox>> {
        let mut all = Vec::new();
        let mut before_id = None;
        loop {
            let page = self
                .store()
                .list_sandboxes(&SandboxQuery {
                    tenant: None,
                    states: states.to_vec(),
                    before_id: before_id.clone(),
                    limit: PAGE,
                    ..SandboxQuery::default()
                })
                .await?;
            let done = page.len() < PAGE;
            before_id = page.last().map(|s| s.id.clone());
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// Finishes the step a crash cut short; failures leave the sandbox FAILED
    /// (or DELETING, for a delete to retry) and are logged.
    async fn settle(&self, sandbox: Sandbox) {
        let id = sandbox.id.clone();
        info!(sandbox_id = %id, state = %sandbox.state, "finishing an interrupted step");
        let outcome = match sandbox.state {
            SandboxState::Pending | SandboxState::Starting if sandbox.started_at.is_some() => {
                // A restart of a stopped sandbox: its object exists.
                self.finish_start(sandbox).await
            }
            SandboxState::Pending | SandboxState::Starting => self.provision(sandbox).await,
            SandboxState::Stopping => {
                let reason = sandbox.state_reason.clone();
                self.finish_stop(sandbox, &reason).await
            }
            SandboxState::Deleting => {
                let reason = sandbox.state_reason.clone();
                self.finish_delete(sandbox, &reason).await
            }
            _ => return,
        };
        match outcome {
            Ok(settled) => {
                info!(sandbox_id = %id, state = %settled.state, "interrupted step settled")
            }
            Err(error) => {
                warn!(sandbox_id = %id, error = %error, "cannot settle an interrupted step")
            }
        }
    }

    async fn realign(&self, sandbox: &Sandbox) -> Result<Realigned> {
        let provider = self.providers().get(&sandbox.provider)?.clone();
        let observed = self
            .call("provider.inspect", provider.inspect(&sandbox.id))
            .await?;
        let Some(observed) = observed else {
            self.transition(
                sandbox,
                sandbox.state,
                SandboxState::Failed,
                "its provider object vanished while the server was not watching",
            )
            .await?;
            return Ok(Realigned::Vanished);
        };
        let want_running = sandbox.state == SandboxState::Running;
        if observed.running == want_running {
            return Ok(Realigned::AsExpected);
        }
        let aligned = if want_running {
            self.call("provider.start", provider.start(&sandbox.id))
                .await
                .map(|agent| drop(self.agent_clients().remember(&sandbox.id, agent)))
        } else {
            self.call("provider.stop", provider.stop(&sandbox.id)).await
        };
        if let Err(error) = aligned {
            let reason = format!("its provider object could not be brought back in line: {error}");
            self.transition(sandbox, sandbox.state, SandboxState::Failed, &reason)
                .await?;
        }
        Ok(Realigned::Corrected)
    }
}

enum Realigned {
    AsExpected,
    Vanished,
    Corrected,
}
