//! The [`Manager`]: every lifecycle action on sandboxes, as a sequence of
//! compare-and-set writes to the store around calls to the provider.
//!
//! The record is always written before the provider is called, so a crash
//! between any two steps leaves a record that [`Manager::reconcile`] can
//! finish or fail. Provider work runs in its own task: a caller that hangs up
//! cannot cut a lifecycle step in half.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{info, instrument, warn};

use super::state::Step;
use super::{
    EventType, LabelSelector, Labels, Metadata, NetworkMode, Sandbox, SandboxSpec, SandboxState,
};
use crate::clock;
use crate::error::{Error, ErrorKind, Result};
use crate::ids;
use crate::provider::{Provider, ProviderInfo, Providers, ProvisionRequest};
use crate::store::{SandboxQuery, Store};

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
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            default_timeout: Some(Duration::from_secs(3600)),
            max_timeout: Some(Duration::from_secs(24 * 3600)),
            provider_call_timeout: Duration::from_secs(120),
            watch_poll_interval: Duration::from_secs(1),
            quotas: super::quota::Quotas::default(),
        }
    }
}

/// What CreateSandbox does when the name is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum IfExists {
    /// Answer ALREADY_EXISTS.
    #[default]
    Fail,
    /// Return the existing sandbox.
    ReturnExisting,
}

/// A validated create request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateSandbox {
    /// A name unique among the tenant's live sandboxes.
    pub name: Option<String>,
    /// What to do when the name is taken.
    pub if_exists: IfExists,
    /// The caller's idempotency key.
    pub request_id: Option<String>,
    /// The provider; `None` for the server's default.
    pub provider: Option<String>,
    /// A template name.
    pub template: Option<String>,
    /// What the sandbox is made of.
    pub spec: SandboxSpec,
    /// Labels.
    pub labels: Labels,
    /// Free-form caller data.
    pub metadata: Metadata,
    /// The lifetime; `None` for the server's default.
    pub timeout: Option<Duration>,
}

/// A new lifetime for a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutUpdate {
    /// Expire this long from now.
    ExpireIn(Duration),
    /// Never expire.
    Never,
}

/// The changes of an UpdateSandbox; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct SandboxUpdate {
    /// New labels, replacing the old.
    pub labels: Option<Labels>,
    /// New metadata, replacing the old.
    pub metadata: Option<Metadata>,
    /// A new lifetime.
    pub timeout: Option<TimeoutUpdate>,
}

/// A validated list request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only these states; empty for every state but DELETED.
    pub states: Vec<SandboxState>,
    /// Only sandboxes whose labels match.
    pub selector: LabelSelector,
    /// The selector as the caller wrote it, to tie page tokens to it.
    pub selector_text: String,
    /// The most sandboxes on a page.
    pub page_size: usize,
    /// The token of the page to get, if not the first.
    pub page_token: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct SandboxPage {
    /// The sandboxes, newest first.
    pub sandboxes: Vec<Sandbox>,
    /// The token of the next page, if there is one.
    pub next_page_token: Option<String>,
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
    /// Channels to the agents of running sandboxes.
    agents: super::agents::AgentChannels,
    /// One lock per tenant, held while its running sandboxes are counted
    /// and one more is admitted.
    tenant_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Manager {
    /// A manager over `store` and `providers`.
    pub async fn new(
        store: Arc<dyn Store>,
        providers: Providers,
        config: LifecycleConfig,
    ) -> Result<Self> {
        let latest = store.latest_revision().await?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                providers,
                config,
                revisions: watch::channel(latest).0,
                agents: Default::default(),
                tenant_locks: Default::default(),
            }),
        })
    }

    pub(super) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
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

    /// The lock under which `tenant`'s running sandboxes are counted.
    fn tenant_lock(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
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
    async fn count_running(
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

    pub(super) fn agent_channels(&self) -> &super::agents::AgentChannels {
        &self.inner.agents
    }

    pub(super) fn subscribe_revisions(&self) -> watch::Receiver<i64> {
        self.inner.revisions.subscribe()
    }

    /// Every provider with its description, and whether it is the default.
    pub async fn list_providers(&self) -> Vec<(ProviderInfo, bool)> {
        let default = self.providers().default_name();
        let mut out = Vec::new();
        for provider in self.providers().all() {
            out.push((provider.info().await, provider.name() == default));
        }
        out
    }

    /// Creates a sandbox and provisions it; returns it and whether this call
    /// made it (false when an existing one is returned for `request_id` or
    /// `IfExists::ReturnExisting`).
    #[instrument(name = "sandbox.create", skip_all, fields(tenant = %tenant, sandbox_id))]
    pub async fn create(&self, tenant: &str, request: CreateSandbox) -> Result<(Sandbox, bool)> {
        let provider_name = request
            .provider
            .clone()
            .unwrap_or_else(|| self.providers().default_name().to_owned());
        let provider = self.providers().get(&provider_name)?.clone();
        if let Some(template) = &request.template {
            return Err(Error::not_found(format!(
                "template: no template named {:?} is defined on this server",
                super::rules::shorten(template)
            )));
        }
        self.config()
            .quotas
            .check_resources(tenant, &request.spec.resources)?;
        let info = provider.info().await;
        check_capabilities(&info, &request.spec)?;
        let now = clock::now();
        let expires_at = self.expiry(now, request.timeout, "timeout")?;
        let fingerprint = fingerprint(&request)?;

        if let Some(existing) = self.find_existing(tenant, &request, &fingerprint).await? {
            return Ok((existing, false));
        }
        if !info.available {
            return Err(Error::unavailable(format!(
                "provider {provider_name} is not available: {}",
                info.detail
            )));
        }
        // Not under the provider-call deadline: a pull may take longer, and
        // the provider bounds it with its own.
        let mut request = request;
        provider.prepare(&mut request.spec).await?;

        let record = Sandbox {
            id: ids::new_sandbox_id(),
            tenant: tenant.to_owned(),
            name: request.name.clone(),
            provider: provider_name,
            provider_ref: None,
            state: SandboxState::Pending,
            state_reason: String::new(),
            spec: request.spec.clone(),
            labels: request.labels.clone(),
            metadata: request.metadata.clone(),
            request_id: request.request_id.clone(),
            request_fingerprint: Some(fingerprint.clone()),
            created_at: now,
            updated_at: now,
            started_at: None,
            expires_at,
            last_activity_at: now,
            revision: 0,
        };
        tracing::Span::current().record("sandbox_id", record.id.as_str());
        // Counting and inserting under the tenant's lock keeps concurrent
        // creates through this server from passing the quota together.
        let counted = self.count_running(tenant).await?;
        let inserted = match self.store().insert_sandbox(&record).await {
            Ok(inserted) => inserted,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // A concurrent create with the same key or name won the race.
                return match self.find_existing(tenant, &request, &fingerprint).await? {
                    Some(existing) => Ok((existing, false)),
                    None => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        drop(counted);
        self.notify(inserted.revision);
        info!(sandbox_id = %inserted.id, provider = %inserted.provider, "sandbox record written");

        let manager = self.clone();
        let sandbox = detached(async move { manager.provision(inserted).await }).await?;
        Ok((sandbox, true))
    }

    /// The sandbox a retry or get-or-create should answer with, if any.
    async fn find_existing(
        &self,
        tenant: &str,
        request: &CreateSandbox,
        fingerprint: &str,
    ) -> Result<Option<Sandbox>> {
        if let Some(request_id) = &request.request_id
            && let Some(existing) = self.store().find_by_request_id(tenant, request_id).await?
        {
            if existing.request_fingerprint.as_deref() != Some(fingerprint) {
                return Err(Error::invalid_argument(
                    "request_id",
                    format!(
                        "{request_id:?} was already used by a different CreateSandbox request (which made {}); \
                         use a new request_id for a new request",
                        existing.id
                    ),
                ));
            }
            return Ok(Some(existing));
        }
        if let Some(name) = &request.name
            && let Some(existing) = self.store().find_by_name(tenant, name).await?
        {
            return match request.if_exists {
                IfExists::ReturnExisting => Ok(Some(existing)),
                IfExists::Fail => Err(Error::already_exists(format!(
                    "a sandbox named {name:?} exists already ({}); set if_exists to \
                     IF_EXISTS_RETURN_EXISTING to get it instead",
                    existing.id
                ))),
            };
        }
        Ok(None)
    }

    /// Takes a PENDING or STARTING sandbox to RUNNING, or to FAILED with the
    /// reason when the provider cannot make or start it.
    #[instrument(name = "sandbox.provision", skip_all, fields(sandbox_id = %sandbox.id))]
    pub(super) async fn provision(&self, sandbox: Sandbox) -> Result<Sandbox> {
        let sandbox = match sandbox.state {
            SandboxState::Pending => {
                self.transition(&sandbox, SandboxState::Pending, SandboxState::Starting, "")
                    .await?
            }
            _ => sandbox,
        };
        let provider = self.providers().get(&sandbox.provider)?.clone();
        let request = ProvisionRequest {
            sandbox_id: &sandbox.id,
            tenant: &sandbox.tenant,
            spec: &sandbox.spec,
        };
        let made = async {
            let provider_ref = self.call(provider.create(request)).await?;
            self.call(provider.start(&sandbox.id)).await?;
            Ok::<_, Error>(provider_ref)
        }
        .await;
        match made {
            Ok(provider_ref) => {
                self.modify(&sandbox.tenant, &sandbox.id, |current| {
                    expect_state(current, SandboxState::Starting)?;
                    let now = clock::now();
                    let mut next = advance(current, SandboxState::Running, "")?;
                    next.provider_ref = Some(provider_ref.clone());
                    next.started_at = Some(now);
                    next.last_activity_at = now;
                    Ok((next, EventType::StateChanged))
                })
                .await
            }
            Err(error) => {
                warn!(error = %error, "provisioning failed");
                self.remove_quietly(provider.as_ref(), &sandbox.id).await;
                let reason = format!("provisioning failed: {error}");
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

    /// One sandbox of `tenant`.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Sandbox> {
        self.store()
            .get_sandbox(tenant, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no sandbox has id {id:?}")))
    }

    /// A page of the tenant's sandboxes.
    pub async fn list(&self, tenant: &str, query: ListQuery) -> Result<SandboxPage> {
        let states = if query.states.is_empty() {
            SandboxState::ALL
                .into_iter()
                .filter(|s| *s != SandboxState::Deleted)
                .collect()
        } else {
            query.states.clone()
        };
        let filter_digest = page_filter_digest(&states, &query.selector_text);
        let before_id = query
            .page_token
            .as_deref()
            .map(|token| decode_page_token(token, &filter_digest))
            .transpose()?;
        let mut sandboxes = self
            .store()
            .list_sandboxes(&SandboxQuery {
                tenant: Some(tenant.to_owned()),
                states,
                selector: query.selector,
                before_id,
                limit: query.page_size + 1,
            })
            .await?;
        let next_page_token = if sandboxes.len() > query.page_size {
            sandboxes.truncate(query.page_size);
            sandboxes
                .last()
                .map(|last| encode_page_token(&last.id, &filter_digest))
        } else {
            None
        };
        Ok(SandboxPage {
            sandboxes,
            next_page_token,
        })
    }

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
        self.agent_channels().forget(&sandbox.id);
        let provider = self.providers().get(&sandbox.provider)?.clone();
        match self.call(provider.stop(&sandbox.id)).await {
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
        detached(async move { manager.finish_start(starting).await }).await
    }

    /// Takes a STARTING sandbox whose object exists to RUNNING, or to FAILED.
    pub(super) async fn finish_start(&self, sandbox: Sandbox) -> Result<Sandbox> {
        let provider = self.providers().get(&sandbox.provider)?.clone();
        match self.call(provider.start(&sandbox.id)).await {
            Ok(()) => {
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
        self.agent_channels().forget(&sandbox.id);
        let provider = self.providers().get(&sandbox.provider)?.clone();
        self.call(provider.delete(&sandbox.id)).await?;
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
    async fn modify(
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
                return Ok(saved);
            }
        }
        Err(Error::unavailable(format!(
            "sandbox {id} is being changed by too many callers at once; try again"
        )))
    }

    fn notify(&self, revision: i64) {
        self.inner.revisions.send_if_modified(|latest| {
            let newer = revision > *latest;
            if newer {
                *latest = revision;
            }
            newer
        });
    }

    /// Runs one provider call under the configured deadline.
    pub(super) async fn call<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let deadline = self.config().provider_call_timeout;
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
        if let Err(error) = self.call(provider.delete(sandbox_id)).await {
            warn!(sandbox_id, error = %error, "cannot remove a half-made provider object");
        }
    }

    /// The expiry time for a requested lifetime, checked against the limits.
    fn expiry(
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
async fn detached<T: Send + 'static>(
    step: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    tokio::spawn(step)
        .await
        .map_err(|e| Error::internal("running a lifecycle step", e))?
}

/// Fails unless the record is in `expected` state (another writer may have
/// moved it since the caller read it).
fn expect_state(current: &Sandbox, expected: SandboxState) -> Result<()> {
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
fn advance(current: &Sandbox, to: SandboxState, reason: &str) -> Result<Sandbox> {
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

fn state_error(sandbox: &Sandbox, rule: &str) -> Error {
    Error::failed_precondition(format!(
        "sandbox {} is {}; {rule}",
        sandbox.id, sandbox.state
    ))
}

/// Refuses what the provider cannot do, rather than silently ignoring it.
fn check_capabilities(info: &ProviderInfo, spec: &SandboxSpec) -> Result<()> {
    let caps = &info.capabilities;
    let lacking = [
        (
            spec.image.is_some() && !caps.images,
            "image",
            "does not run images; leave image unset",
        ),
        (
            spec.resources.is_limited() && !caps.resource_limits,
            "resources",
            "cannot enforce resource limits",
        ),
        (
            spec.network == NetworkMode::None && !caps.network_none,
            "network",
            "cannot cut a sandbox off the network",
        ),
        (
            !spec.volumes.is_empty() && !caps.volumes,
            "volumes",
            "cannot mount volumes",
        ),
        (
            spec.read_only_root && !caps.read_only_root,
            "read_only_root",
            "cannot make a root filesystem read-only",
        ),
    ];
    match lacking.into_iter().find(|(lacks, ..)| *lacks) {
        Some((_, field, what)) => Err(Error::failed_precondition(format!(
            "{field}: provider {} {what}",
            info.name
        ))),
        None => Ok(()),
    }
}

/// A digest of a create request, to spot an idempotency key reused for a
/// different request.
fn fingerprint(request: &CreateSandbox) -> Result<String> {
    let json = serde_json::to_vec(request)
        .map_err(|e| Error::internal("fingerprinting a create request", e))?;
    Ok(crate::ids::sha256_hex(&json))
}

fn page_filter_digest(states: &[SandboxState], selector: &str) -> String {
    let mut hasher = Sha256::new();
    for state in states {
        hasher.update(state.as_str());
        hasher.update(b",");
    }
    hasher.update(b"|");
    hasher.update(selector.as_bytes());
    crate::ids::hex(&hasher.finalize()[..8])
}

fn encode_page_token(last_id: &str, filter_digest: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1|{last_id}|{filter_digest}"))
}

fn decode_page_token(token: &str, filter_digest: &str) -> Result<String> {
    let invalid = || {
        Error::invalid_argument(
            "page_token",
            "is not a token from an earlier ListSandboxes response",
        )
    };
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)?;
    let mut parts = text.split('|');
    let (Some("v1"), Some(last_id), Some(digest), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    if !ids::is_sandbox_id(last_id) {
        return Err(invalid());
    }
    if digest != filter_digest {
        return Err(Error::invalid_argument(
            "page_token",
            "was made for other filters; pass the same states and label_selector as the first page",
        ));
    }
    Ok(last_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_bind_filters() {
        let id = ids::new_sandbox_id();
        let digest = page_filter_digest(&[SandboxState::Running], "a=b");
        let token = encode_page_token(&id, &digest);
        assert_eq!(decode_page_token(&token, &digest).unwrap(), id);
        let other = page_filter_digest(&[SandboxState::Running], "a=c");
        assert_eq!(
            decode_page_token(&token, &other).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert!(decode_page_token("garbage!", &digest).is_err());
    }

    #[test]
    fn fingerprints_differ_by_request() {
        let a = CreateSandbox::default();
        let b = CreateSandbox {
            name: Some("x".into()),
            ..CreateSandbox::default()
        };
        assert_eq!(fingerprint(&a).unwrap(), fingerprint(&a).unwrap());
        assert_ne!(fingerprint(&a).unwrap(), fingerprint(&b).unwrap());
    }
}
