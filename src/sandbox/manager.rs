//! The [`Manager`]: every lifecycle action on sandboxes, as a sequence of
//! compare-and-set writes to the store around calls to the provider. This
//! file holds its state and the machinery every action shares (the
//! compare-and-set loop, provider calls under a deadline, admissions); the
//! actions themselves are in create.rs, lifecycle.rs, listing.rs and their
//! neighbours.
//!
//! The record is always written before the provider is called, so a crash
//! between any two steps leaves a record that [`Manager::reconcile`] can
//! finish or fail. Provider work runs in its own task: a caller that hangs up
//! cannot cut a lifecycle step in half.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tracing::{Instrument, warn};

use super::{EventType, Resources, Sandbox, SandboxState};
use crate::clock;
use crate::error::{Error, ErrorKind, Result};
use crate::provider::{Provider, Providers};
use crate::store::{SandboxQuery, Store};
use crate::telemetry::Metrics;

/// How many times a read-decide-write cycle is retried when concurrent writers
/// keep winning the compare-and-set.
const MAX_WRITE_ATTEMPTS: usize = 16;

/// Server-wide lifecycle settings.
#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    /// The lifetime of a sandbox whose request sets none; `None`: unlimited.
    pub default_timeout: Option<Duration>,
    /// The longest lifetime a request may ask for; `None`: unlimited.
    pub max_timeout: Option<Duration>,
    /// The deadline of each provider call.
    pub provider_call_timeout: Duration,
    /// How often a watch checks the store for events written by other
    /// replicas (events of this replica wake it at once).
    pub watch_poll_interval: Duration,
    /// Per-tenant quotas.
    pub quotas: super::quota::Quotas,
    /// The most Exec streams and RunCommand calls in flight through this
    /// server, every tenant's together.
    pub max_commands: usize,
    /// Whether a request may ask for [`super::NetworkMode::Bridge`], which opens
    /// other sandboxes and the host to the sandbox.
    pub allow_bridge_network: bool,
    /// The limits of sandboxes whose request leaves them unset, on providers
    /// that enforce limits.
    pub default_resources: Resources,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            default_timeout: Some(Duration::from_secs(3600)),
            max_timeout: Some(Duration::from_secs(24 * 3600)),
            provider_call_timeout: Duration::from_secs(120),
            watch_poll_interval: Duration::from_secs(1),
            quotas: super::quota::Quotas::default(),
            max_commands: 4096,
            allow_bridge_network: false,
            default_resources: Resources {
                cpu_millis: Some(1000),
                memory_bytes: Some(1 << 30),
                pids: Some(1024),
            },
        }
    }
}

/// Drives sandboxes through their lifecycle. Cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    providers: Providers,
    config: LifecycleConfig,
    /// The latest revision this replica wrote, to wake watchers at once.
    revisions: watch::Sender<i64>,
    /// Clients of the agents of running sandboxes.
    agents: super::agent_cache::AgentClients,
    /// Commands in flight through this server.
    commands: super::quota::CommandSlots,
    /// One lock per tenant, held while its running sandboxes are counted
    /// and one more is admitted.
    tenant_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// What the server counts for its operators.
    metrics: Arc<Metrics>,
    /// Each sandbox's last measured CPU time, for CPU shares.
    cpu_samples: super::cpu_samples::CpuSamples,
    warm_pools: super::warm_counters::WarmPools,
}

impl Manager {
    /// A manager over `store` and `providers`, counting in `metrics`.
    pub async fn new(
        store: Arc<dyn Store>,
        providers: Providers,
        config: LifecycleConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let latest = store.latest_revision().await?;
        let commands = super::quota::CommandSlots::new(config.max_commands);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                providers,
                config,
                revisions: watch::channel(latest).0,
                agents: Default::default(),
                commands,
                tenant_locks: Default::default(),
                metrics,
                cpu_samples: Default::default(),
                warm_pools: Default::default(),
            }),
        })
    }

    pub(super) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// What this server counts for its operators.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub(super) fn cpu_samples(&self) -> &super::cpu_samples::CpuSamples {
        &self.inner.cpu_samples
    }

    pub(super) fn warm_pools(&self) -> &super::warm_counters::WarmPools {
        &self.inner.warm_pools
    }

    /// Commands in flight through this server: RunCommand calls and Exec
    /// streams.
    pub fn commands_in_flight(&self) -> usize {
        self.inner.commands.in_flight()
    }

    /// How many sandboxes each provider holds in each state, every
    /// replica's (DELETED left out).
    pub async fn census(&self) -> Result<Vec<(String, SandboxState, u64)>> {
        self.store().census().await
    }

    pub(super) fn providers(&self) -> &Providers {
        &self.inner.providers
    }

    pub(super) fn config(&self) -> &LifecycleConfig {
        &self.inner.config
    }

    /// The quota of `tenant`.
    pub fn quota(&self, tenant: &str) -> super::quota::Quota {
        self.config().quotas.of(tenant)
    }

    /// Admits one more command of `tenant` in flight through this server, or
    /// refuses it (RESOURCE_EXHAUSTED) at the server's limit or the tenant's
    /// `commands` quota. The command holds its places until the admission
    /// is dropped.
    pub fn admit_command(&self, tenant: &str) -> Result<super::quota::CommandAdmission> {
        self.inner
            .commands
            .admit(tenant, self.quota(tenant).commands)
    }

    /// The lock under which `tenant`'s running sandboxes are counted.
    pub(super) fn tenant_lock(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .tenant_locks
            .lock()
            .expect("tenant locks")
            .entry(tenant.to_owned())
            .or_default()
            .clone()
    }

    /// Admits one more running sandbox of `tenant`, or refuses it when the
    /// tenant has as many as its quota allows (every sandbox not STOPPED,
    /// FAILED or DELETED counts). The guard returned, held until the new
    /// sandbox is written, keeps concurrent admissions through this server
    /// from passing the quota together; `None` when there is no quota.
    pub(super) async fn count_running(
        &self,
        tenant: &str,
    ) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>> {
        let Some(quota) = self.config().quotas.of(tenant).running_sandboxes else {
            return Ok(None);
        };
        let guard = self.tenant_lock(tenant).lock_owned().await;
        let running = self
            .store()
            .list_sandboxes(&SandboxQuery {
                tenant: Some(tenant.to_owned()),
                states: vec![
                    SandboxState::Pending,
                    SandboxState::Starting,
                    SandboxState::Running,
                    SandboxState::Stopping,
                ],
                limit: usize::try_from(quota)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
                ..SandboxQuery::default()
            })
            .await?
            .len() as u64;
        if running >= quota {
            return Err(Error::resource_exhausted(format!(
                "tenant {tenant} has {running} sandboxes running, its quota running_sandboxes \
                 ({quota}); stop or delete one first"
            )));
        }
        Ok(Some(guard))
    }

    pub(super) fn agent_clients(&self) -> &super::agent_cache::AgentClients {
        &self.inner.agents
    }

    pub(super) fn subscribe_revisions(&self) -> watch::Receiver<i64> {
        self.inner.revisions.subscribe()
    }

    /// Moves `sandbox` from `from` to `to` with `reason`, as one compare-and-set.
    pub(super) async fn transition(
        &self,
        sandbox: &Sandbox,
        from: SandboxState,
        to: SandboxState,
        reason: &str,
    ) -> Result<Sandbox> {
        self.modify(&sandbox.tenant, &sandbox.id, |current| {
            expect_state(current, from)?;
            Ok((advance(current, to, reason)?, EventType::StateChanged))
        })
        .await
    }

    /// Reads the record, lets `decide` make the next version of it, and
    /// writes that if the record has not moved on meanwhile; otherwise reads
    /// again and decides anew.
    pub(super) async fn modify(
        &self,
        tenant: &str,
        id: &str,
        mut decide: impl FnMut(&Sandbox) -> Result<(Sandbox, EventType)>,
    ) -> Result<Sandbox> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let current = self.get(tenant, id).await?;
            let (next, event_type) = decide(&current)?;
            if let Some(saved) = self
                .store()
                .update_sandbox(&next, current.revision, event_type)
                .await?
            {
                self.notify(saved.revision);
                // The one place the domain lets go of a sandbox's agent:
                // when the sandbox moves to any state but RUNNING.
                if saved.state != SandboxState::Running && saved.state != current.state {
                    self.agent_clients().forget(id);
                }
                return Ok(saved);
            }
        }
        Err(Error::unavailable(format!(
            "sandbox {id} is being changed by too many callers at once; try again"
        )))
    }

    pub(super) fn notify(&self, revision: i64) {
        self.inner.revisions.send_if_modified(|latest| {
            let newer = revision > *latest;
            if newer {
                *latest = revision;
            }
            newer
        });
    }

    /// Runs one provider call under the configured deadline, in a
    /// `provider` span named `operation`.
    pub(super) async fn call<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let deadline = self.config().provider_call_timeout;
        let call = call.instrument(tracing::info_span!("provider", otel.name = operation));
        tokio::time::timeout(deadline, call).await.map_err(|_| {
            Error::new(
                ErrorKind::DeadlineExceeded,
                format!(
                    "the provider did not answer within {}",
                    humantime::format_duration(deadline)
                ),
            )
        })?
    }

    /// Removes a half-made provider object, logging instead of failing.
    pub(super) async fn remove_quietly(&self, provider: &dyn Provider, sandbox_id: &str) {
        if let Err(error) = self
            .call("provider.delete", provider.delete(sandbox_id))
            .await
        {
            warn!(sandbox_id, error = %error, "cannot remove a half-made provider object");
        }
    }

    /// The expiry time for a requested lifetime, checked against the limits.
    pub(super) fn expiry(
        &self,
        now: SystemTime,
        timeout: Option<Duration>,
        field: &str,
    ) -> Result<Option<SystemTime>> {
        let Some(timeout) = timeout.or(self.config().default_timeout) else {
            return Ok(None);
        };
        if let Some(max) = self.config().max_timeout
            && timeout > max
        {
            return Err(Error::invalid_argument(
                field,
                format!(
                    "{} is longer than this server's limit of {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(max)
                ),
            ));
        }
        Ok(now.checked_add(timeout))
    }
}

/// Runs a lifecycle step in its own task, so that a caller hanging up (which
/// drops the request's future) cannot stop it half-way.
pub(super) async fn detached<T: Send + 'static>(
    step: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    // In the caller's span, so that the step's work shows in its trace.
    tokio::spawn(step.in_current_span())
        .await
        .map_err(|e| Error::internal("running a lifecycle step", e))?
}

/// Fails unless the record is in `expected` state (another writer may have
/// moved it since the caller read it).
pub(super) fn expect_state(current: &Sandbox, expected: SandboxState) -> Result<()> {
    if current.state == expected {
        Ok(())
    } else {
        Err(Error::failed_precondition(format!(
            "sandbox {} changed to {} while this request expected it {expected}",
            current.id, current.state
        )))
    }
}

/// A copy of `current` in state `to`, if the state machine allows it.
pub(super) fn advance(current: &Sandbox, to: SandboxState, reason: &str) -> Result<Sandbox> {
    if !current.state.can_become(to) {
        return Err(Error::internal(
            "changing a sandbox's state",
            format!(
                "illegal transition {} -> {to} of {}",
                current.state, current.id
            ),
        ));
    }
    let mut next = current.clone();
    next.state = to;
    next.state_reason = reason.to_owned();
    next.updated_at = clock::now();
    Ok(next)
}

pub(super) fn state_error(sandbox: &Sandbox, rule: &str) -> Error {
    Error::failed_precondition(format!(
        "sandbox {} is {}; {rule}",
        sandbox.id, sandbox.state
    ))
}
