//! Warm pools: sandboxes of a template made ahead of time, running with
//! their setup done, that a create naming the template claims at once.
//!
//! A pooled sandbox is an ordinary record whose tenant is the template
//! owner's pool tenant (`<tenant>/warm-pool`, which no key can name: tenant
//! names have no '/'), so every tenant-scoped read, list and watch leaves it
//! out, and the reaper, the reconciler and deletes treat it like any other.
//! A claim is one compare-and-set update of the record that moves it to the
//! tenant with the request's name, labels, metadata, lifetime and env: two
//! claimers (on one server or on replicas sharing a Postgres) never get the
//! same sandbox, since only one update of a revision succeeds. Env given at
//! claim is not in the sandbox's processes' environment (it was made
//! without it): the control plane adds it to every command it starts
//! (`SandboxSpec::command_env`).
//!
//! The server holding the reaper's lease refills the pools in the
//! background: every second, and at once when a claim or a template change
//! wakes it; a pool whose sandbox failed to start rests for 30 seconds.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::lease::Lease;
use super::template::TemplateRecord;
use super::warm_counters::WarmPoolStatus;
use super::{CreateSandbox, EventType, Manager, Sandbox, SandboxState};
use crate::clock;
use crate::error::{ErrorKind, Result};
use crate::store::SandboxQuery;

/// What a template owner's pool tenant ends with.
const POOL_TENANT_SUFFIX: &str = "/warm-pool";

/// How often the pools are checked when nothing wakes the refill.
const REFILL_INTERVAL: Duration = Duration::from_secs(1);

/// The tenant that holds `owner`'s pooled sandboxes.
pub fn pool_tenant(owner: &str) -> String {
    format!("{owner}{POOL_TENANT_SUFFIX}")
}

/// Whether a create that names `template` may claim one of its pooled
/// sandboxes: it changes nothing the sandbox's container is made of, only
/// what a claim sets (name, labels, metadata, env, lifetime, idempotency).
pub(super) fn claimable(asked: &CreateSandbox, template: &TemplateRecord) -> bool {
    let spec = &asked.spec;
    template.spec.warm_pool_size > 0
        && (asked.provider.is_none() || asked.provider == template.spec.provider)
        && spec.image.is_none()
        && !spec.resources.is_limited()
        && spec.workdir.is_empty()
        && asked.network.is_none()
        && spec.allowed_hosts.is_empty()
        && spec.volumes.is_empty()
        && !spec.read_only_root
        && spec.runtime.is_none()
}

/// The pooled sandbox `member` as `tenant`'s, claimed by `asked`.
fn claimed_record(
    member: &Sandbox,
    tenant: &str,
    asked: &CreateSandbox,
    fingerprint: &str,
    expires_at: Option<std::time::SystemTime>,
) -> Sandbox {
    let now = clock::now();
    let mut claimed = member.clone();
    claimed.tenant = tenant.to_owned();
    claimed.name.clone_from(&asked.name);
    claimed.labels.clone_from(&asked.labels);
    claimed.metadata.clone_from(&asked.metadata);
    claimed.request_id.clone_from(&asked.request_id);
    claimed.request_fingerprint = Some(fingerprint.to_owned());
    claimed.created_at = now;
    claimed.updated_at = now;
    claimed.last_activity_at = now;
    claimed.expires_at = expires_at;
    claimed.spec.idle_timeout = asked.spec.idle_timeout;
    for (key, value) in &asked.spec.env {
        claimed.spec.env.insert(key.clone(), value.clone());
        claimed.spec.command_env.insert(key.clone(), value.clone());
    }
    claimed
}

/// Whether `sandbox` was made from this version of `template`.
fn of_version(sandbox: &Sandbox, template: &TemplateRecord) -> bool {
    sandbox
        .spec
        .template
        .as_ref()
        .is_some_and(|made| made.id == template.id && made.version == template.version)
}

/// The states of pooled sandboxes that are, or will be, ready.
const LIVE: [SandboxState; 3] = [
    SandboxState::Pending,
    SandboxState::Starting,
    SandboxState::Running,
];

/// Runs the pools' refill while this server holds `lease`, every
/// [`REFILL_INTERVAL`] and whenever a claim or a template change wakes it,
/// until the task is aborted.
pub fn spawn_warm_pools(manager: Manager, lease: Lease) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(REFILL_INTERVAL) => {}
                () = manager.warm_pools().wake.notified() => {}
            }
            if !lease.held() {
                continue;
            }
            if let Err(error) = manager.refill_pools().await {
                warn!(%error, "warm pool refill failed");
            }
        }
    })
}

impl Manager {
    /// Claims a ready pooled sandbox of `template` for `tenant`, as `asked`
    /// (the create request before the template filled it in) says; `None`
    /// when the pool has none ready.
    pub(super) async fn claim_warm(
        &self,
        tenant: &str,
        template: &TemplateRecord,
        asked: &CreateSandbox,
        fingerprint: &str,
    ) -> Result<Option<Sandbox>> {
        let expires_at = self.expiry(clock::now(), asked.timeout, "timeout")?;
        let mut ready: Vec<Sandbox> = self
            .pool_members(&template.tenant)
            .await?
            .into_iter()
            .filter(|member| member.state == SandboxState::Running && of_version(member, template))
            .collect();
        // Concurrent claimers start at different members, so that most of
        // them win their first update.
        if !ready.is_empty() {
            let start = getrandom::u32().unwrap_or(0) as usize % ready.len();
            ready.rotate_left(start);
        }
        let counted = self.count_running(tenant).await?;
        for member in ready {
            let claimed = claimed_record(&member, tenant, asked, fingerprint, expires_at);
            let Some(claimed) = self
                .store()
                .update_sandbox(&claimed, member.revision, EventType::Created)
                .await?
            else {
                // Another claim (or a refill's change) won this one.
                continue;
            };
            drop(counted);
            self.notify(claimed.revision);
            self.warm_pools().count(&template.id, |pool| pool.hits += 1);
            self.metrics().warm_pools().claimed(&template.id, true);
            self.wake_warm_pools();
            info!(sandbox_id = %claimed.id, template_id = %template.id, "warm sandbox claimed");
            return Ok(Some(claimed));
        }
        self.warm_pools()
            .count(&template.id, |pool| pool.misses += 1);
        self.metrics().warm_pools().claimed(&template.id, false);
        self.wake_warm_pools();
        Ok(None)
    }

    /// The pool of `template` (its latest version) now, with this server's
    /// counters; `None` for a template that keeps no pool.
    pub async fn warm_pool(&self, template: &TemplateRecord) -> Result<Option<WarmPoolStatus>> {
        if template.spec.warm_pool_size == 0 {
            return Ok(None);
        }
        let mut status = self.warm_pools().counters(&template.id);
        for member in self.pool_members(&template.tenant).await? {
            if !of_version(&member, template) {
                continue;
            }
            match member.state {
                SandboxState::Running => status.ready += 1,
                SandboxState::Pending | SandboxState::Starting => status.starting += 1,
                // Failed or stopped: the next refill removes it.
                _ => {}
            }
        }
        Ok(Some(status))
    }

    /// Wakes the refill now: a template changed, or a claim emptied a
    /// place.
    pub(super) fn wake_warm_pools(&self) {
        self.warm_pools().wake.notify_one();
    }

    /// Deletes the pooled sandboxes of template `template_id` of `owner`
    /// (a template being deleted).
    pub(super) async fn drain_pool(&self, owner: &str, template_id: &str) -> Result<()> {
        self.metrics().warm_pools().forget(template_id);
        let pool = pool_tenant(owner);
        for member in self.pool_members(owner).await? {
            if member.spec.template.as_ref().map(|t| t.id.as_str()) == Some(template_id) {
                self.remove_member(&pool, &member, "its template was deleted")
                    .await;
            }
        }
        Ok(())
    }

    /// One refill pass over every template with a pool: pooled sandboxes
    /// of older versions, of templates without a pool and those that
    /// failed or stopped are deleted; each pool is made up to its size.
    pub async fn refill_pools(&self) -> Result<()> {
        let templates = self.store().list_templates(None).await?;
        let mut owners: BTreeMap<&str, Vec<&TemplateRecord>> = BTreeMap::new();
        for template in &templates {
            owners.entry(&template.tenant).or_default().push(template);
        }
        for (owner, templates) in owners {
            let pool = pool_tenant(owner);
            let members = self.pool_members(owner).await?;
            for template in templates.iter().filter(|t| t.spec.warm_pool_size == 0) {
                self.metrics().warm_pools().forget(&template.id);
            }
            let mut wanted: HashMap<&str, (&TemplateRecord, u32)> = templates
                .iter()
                .filter(|t| t.spec.warm_pool_size > 0)
                .map(|t| (t.id.as_str(), (*t, t.spec.warm_pool_size)))
                .collect();
            for member in members {
                let keep = LIVE.contains(&member.state)
                    && member.spec.template.as_ref().is_some_and(|made| {
                        wanted.get_mut(made.id.as_str()).is_some_and(|(t, left)| {
                            let keep = made.version == t.version && *left > 0;
                            *left -= u32::from(keep);
                            keep
                        })
                    });
                if !keep {
                    self.remove_member(&pool, &member, "the warm pool no longer wants it")
                        .await;
                }
            }
            for (template, missing) in wanted.into_values() {
                let mut ready = template.spec.warm_pool_size - missing;
                for _ in 0..missing {
                    if self.warm_pools().resting(&template.id) {
                        break;
                    }
                    if self.make_member(owner, template).await {
                        ready += 1;
                    } else {
                        self.warm_pools().rest(&template.id);
                    }
                }
                self.metrics().warm_pools().set_ready(&template.id, ready);
            }
        }
        Ok(())
    }

    /// The pooled sandboxes of `owner`'s templates, in every state.
    async fn pool_members(&self, owner: &str) -> Result<Vec<Sandbox>> {
        self.store()
            .list_sandboxes(&SandboxQuery {
                tenant: Some(pool_tenant(owner)),
                limit: usize::MAX,
                ..SandboxQuery::default()
            })
            .await
            .map(|members| {
                members
                    .into_iter()
                    .filter(|member| member.state != SandboxState::Deleted)
                    .collect()
            })
    }

    /// Makes one pooled sandbox of `template`; whether it is ready. A
    /// failure is logged (the next pass tries again).
    async fn make_member(&self, owner: &str, template: &TemplateRecord) -> bool {
        let began = Instant::now();
        let mut request = CreateSandbox::default();
        request.apply_template(template);
        match self.make(owner, None, request, began).await {
            Ok((member, _)) if !self.still_wanted(template).await => {
                // The template was deleted or changed while this was made.
                self.remove_member(&member.tenant, &member, "its template changed")
                    .await;
                false
            }
            Ok((member, _)) if member.state == SandboxState::Running => {
                let took = began.elapsed();
                self.warm_pools()
                    .count(&template.id, |pool| pool.last_refill = Some(took));
                self.metrics().warm_pools().refilled(took);
                true
            }
            Ok((member, _)) => {
                warn!(sandbox_id = %member.id, state = %member.state, reason = %member.state_reason,
                      template_id = %template.id, "a pooled sandbox did not start");
                self.failed_member(
                    template,
                    format!(
                        "sandbox {} is {}: {}",
                        member.id, member.state, member.state_reason
                    ),
                );
                false
            }
            Err(error) => {
                warn!(%error, template_id = %template.id, "cannot make a pooled sandbox");
                self.failed_member(template, error.to_string());
                false
            }
        }
    }

    fn failed_member(&self, template: &TemplateRecord, why: String) {
        self.warm_pools().count(&template.id, |pool| {
            pool.failures += 1;
            pool.last_failure = Some(why);
        });
    }

    /// Whether `template` is still its template's latest version with a
    /// pool (a failed read says yes: the next pass decides again).
    async fn still_wanted(&self, template: &TemplateRecord) -> bool {
        match self
            .store()
            .get_template(&template.tenant, &template.name, None)
            .await
        {
            Ok(latest) => latest.is_some_and(|latest| {
                latest.id == template.id
                    && latest.version == template.version
                    && latest.spec.warm_pool_size > 0
            }),
            Err(_) => true,
        }
    }

    async fn remove_member(&self, pool: &str, member: &Sandbox, reason: &str) {
        match self.delete(pool, &member.id, reason).await {
            Ok(_) => info!(sandbox_id = %member.id, %reason, "pooled sandbox deleted"),
            // Claimed meanwhile: it is its tenant's now.
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => warn!(sandbox_id = %member.id, %error, "cannot delete a pooled sandbox"),
        }
    }
}
