//! Creating a sandbox: idempotency by request id, get-or-create by name, the
//! record written first, then provisioning by the provider.

use tracing::{Instrument, info, instrument, warn};

use super::manager::{advance, detached, expect_state};
use super::warm::{claimable, pool_tenant};
use super::{
    CreateSandbox, EventType, IfExists, Manager, NetworkMode, Sandbox, SandboxSpec, SandboxState,
};
use crate::clock;
use crate::error::{Error, ErrorKind, Result};
use crate::ids;
use crate::provider::{ProviderInfo, ProvisionRequest};

impl Manager {
    /// Creates a sandbox and provisions it; returns it and whether this call
    /// made it (false when an existing one is returned for `request_id` or
    /// `IfExists::ReturnExisting`).
    #[instrument(name = "sandbox.create", skip_all, fields(tenant = %tenant, sandbox_id))]
    pub async fn create(&self, tenant: &str, request: CreateSandbox) -> Result<(Sandbox, bool)> {
        let began = std::time::Instant::now();
        let fingerprint = fingerprint(&request)?;
        let asked = request.clone();
        let mut request = request;
        let template = self.apply_template(tenant, &mut request).await?;
        if let Some(template) = template.filter(|template| claimable(&asked, template)) {
            if let Some(existing) = self.find_existing(tenant, &request, &fingerprint).await? {
                return Ok((existing, false));
            }
            if let Some(claimed) = self
                .claim_warm(tenant, &template, &asked, &fingerprint)
                .await?
            {
                tracing::Span::current().record("sandbox_id", claimed.id.as_str());
                self.metrics()
                    .sandbox_created(&claimed.provider, began.elapsed());
                return Ok((claimed, true));
            }
        }
        self.make(tenant, Some(fingerprint), request, began).await
    }

    /// Makes a sandbox of `owner` from `request` (its template applied):
    /// the caller's, with its request's `fingerprint`, or (for `None`) a
    /// pooled sandbox of `owner`'s pool, without lifetime and outside the
    /// quota of running sandboxes until claimed.
    pub(super) async fn make(
        &self,
        owner: &str,
        fingerprint: Option<String>,
        mut request: CreateSandbox,
        began: std::time::Instant,
    ) -> Result<(Sandbox, bool)> {
        let provider_name = request
            .provider
            .clone()
            .unwrap_or_else(|| self.providers().default_name().to_owned());
        let provider = self.providers().get(&provider_name)?.clone();
        self.config()
            .quotas
            .check_resources(owner, &request.spec.resources)?;
        self.config()
            .quotas
            .check_allowed_hosts(owner, &request.spec.allowed_hosts)?;
        let info = provider.info().await;
        request.spec.network =
            resolve_network(&info, request.network, self.config().allow_bridge_network)?;
        if info.capabilities.resource_limits {
            request.spec.resources = self.config().quotas.with_defaults(
                owner,
                request.spec.resources,
                self.config().default_resources,
            );
        }
        check_capabilities(&info, &request.spec)?;
        let now = clock::now();
        let expires_at = match fingerprint {
            Some(_) => self.expiry(now, request.timeout, "timeout")?,
            None => None,
        };

        if let Some(fingerprint) = &fingerprint
            && let Some(existing) = self.find_existing(owner, &request, fingerprint).await?
        {
            return Ok((existing, false));
        }
        if !info.available {
            return Err(Error::unavailable(format!(
                "provider {provider_name} is not available: {}",
                info.detail
            )));
        }
        self.resolve_volumes(owner, &provider_name, &mut request.spec)
            .await?;
        // Not under the provider-call deadline: a pull may take longer, and
        // the provider bounds it with its own.
        provider
            .prepare(&mut request.spec)
            .instrument(tracing::info_span!(
                "provider",
                otel.name = "provider.prepare"
            ))
            .await?;

        let pooled = fingerprint.is_none();
        let record = Sandbox {
            id: ids::new_sandbox_id(),
            tenant: if pooled {
                pool_tenant(owner)
            } else {
                owner.to_owned()
            },
            name: request.name.clone(),
            provider: provider_name,
            provider_ref: None,
            state: SandboxState::Pending,
            state_reason: String::new(),
            spec: request.spec.clone(),
            labels: request.labels.clone(),
            metadata: request.metadata.clone(),
            request_id: request.request_id.clone(),
            request_fingerprint: fingerprint.clone(),
            created_at: now,
            updated_at: now,
            started_at: None,
            expires_at,
            last_activity_at: now,
            public_ports: Vec::new(),
            revision: 0,
        };
        tracing::Span::current().record("sandbox_id", record.id.as_str());
        // Counting and inserting under the tenant's lock keeps concurrent
        // creates through this server from passing the quota together.
        let counted = match pooled {
            false => self.count_running(owner).await?,
            true => None,
        };
        let inserted = match self.store().insert_sandbox(&record).await {
            Ok(inserted) => inserted,
            Err(e) if e.kind() == ErrorKind::AlreadyExists && !pooled => {
                // A concurrent create with the same key or name won the race.
                let fingerprint = fingerprint.unwrap_or_default();
                return match self.find_existing(owner, &request, &fingerprint).await? {
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
        if sandbox.state == SandboxState::Running && !pooled {
            self.metrics()
                .sandbox_created(&sandbox.provider, began.elapsed());
        }
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
            let provider_ref = self
                .call("provider.create", provider.create(request))
                .await?;
            #[cfg(feature = "test-hooks")]
            crate::test_hooks::gate("created", &sandbox.id).await;
            let agent = self
                .call("provider.start", provider.start(&sandbox.id))
                .await?;
            let client = self.agent_clients().remember(&sandbox.id, agent);
            if let Some(setup) = &sandbox.spec.setup_command {
                client
                    .run_setup(&sandbox.id, setup)
                    .instrument(tracing::info_span!("sandbox.setup"))
                    .await?;
            }
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
    if let Some(runtime) = &spec.runtime
        && !info.runtimes.contains(runtime)
    {
        return Err(Error::failed_precondition(format!(
            "runtime: provider {} does not offer {runtime:?}{}",
            info.name,
            if info.runtimes.is_empty() {
                String::from(" (it has no runtimes to choose from; leave runtime empty)")
            } else {
                format!(" (it offers: {})", info.runtimes.join(", "))
            }
        )));
    }
    match lacking.into_iter().find(|(lacks, ..)| *lacks) {
        Some((_, field, what)) => Err(Error::failed_precondition(format!(
            "{field}: provider {} {what}",
            info.name
        ))),
        None => Ok(()),
    }
}

/// The network a sandbox gets: the mode asked for, else the strictest that
/// keeps it online which the provider enforces (EGRESS, then NONE, then
/// BRIDGE). FAILED_PRECONDITION when the provider cannot enforce the mode, or
/// when it is BRIDGE and the operator does not allow that.
fn resolve_network(
    info: &ProviderInfo,
    asked: Option<NetworkMode>,
    allow_bridge: bool,
) -> Result<NetworkMode> {
    let caps = &info.capabilities;
    let mode = match asked {
        Some(mode) => mode,
        None if caps.network_egress => NetworkMode::Egress,
        None if caps.network_none => NetworkMode::None,
        None => NetworkMode::Bridge,
    };
    let provider = &info.name;
    let refusal = match mode {
        NetworkMode::Egress if !caps.network_egress => format!(
            "provider {provider} cannot enforce NETWORK_MODE_EGRESS here ({}); ask for \
             NETWORK_MODE_NONE",
            info.detail
        ),
        NetworkMode::None if !caps.network_none => {
            format!("provider {provider} cannot cut a sandbox off the network")
        }
        NetworkMode::AllowList if !caps.network_allow_list => format!(
            "provider {provider} cannot enforce NETWORK_MODE_ALLOW_LIST here ({}); ask for \
             NETWORK_MODE_NONE",
            info.detail
        ),
        NetworkMode::Bridge if !caps.network_bridge => {
            format!("provider {provider} has no NETWORK_MODE_BRIDGE")
        }
        NetworkMode::Bridge if !allow_bridge => {
            let why = if asked.is_none() {
                format!(
                    "provider {provider} can enforce neither NETWORK_MODE_EGRESS nor \
                     NETWORK_MODE_NONE here, and "
                )
            } else {
                String::new()
            };
            format!(
                "{why}NETWORK_MODE_BRIDGE would let the sandbox reach other sandboxes and the \
                 host; this server does not allow it (its operator can, with \
                 --allow-bridge-network)"
            )
        }
        _ => return Ok(mode),
    };
    Err(Error::failed_precondition(format!("network: {refusal}")))
}

/// A digest of a create request, to spot an idempotency key reused for a
/// different request.
fn fingerprint(request: &CreateSandbox) -> Result<String> {
    let json = serde_json::to_vec(request)
        .map_err(|e| Error::internal("fingerprinting a create request", e))?;
    Ok(crate::ids::sha256_hex(&json))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn provider(egress: bool, none: bool, bridge: bool) -> ProviderInfo {
        ProviderInfo {
            name: "p".into(),
            available: true,
            detail: "why not".into(),
            isolation: String::new(),
            capabilities: crate::provider::Capabilities {
                network_egress: egress,
                network_none: none,
                network_bridge: bridge,
                ..Default::default()
            },
            runtimes: Vec::new(),
        }
    }

    #[test]
    fn an_unspecified_network_is_the_strictest_online_mode_the_provider_enforces() {
        assert_eq!(
            resolve_network(&provider(true, true, true), None, false).unwrap(),
            NetworkMode::Egress
        );
        assert_eq!(
            resolve_network(&provider(false, true, true), None, false).unwrap(),
            NetworkMode::None
        );
        assert_eq!(
            resolve_network(&provider(false, false, true), None, true).unwrap(),
            NetworkMode::Bridge
        );
        let refused = resolve_network(&provider(false, false, true), None, false)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("neither NETWORK_MODE_EGRESS nor NETWORK_MODE_NONE")
                && refused.contains("--allow-bridge-network"),
            "{refused}"
        );
    }

    #[test]
    fn a_network_the_provider_cannot_enforce_or_the_operator_forbids_is_refused() {
        let open = provider(true, true, true);
        assert_eq!(
            resolve_network(&open, Some(NetworkMode::Bridge), true).unwrap(),
            NetworkMode::Bridge
        );
        for (info, asked, allow, says) in [
            (&open, NetworkMode::Bridge, false, "does not allow it"),
            (
                &provider(false, true, true),
                NetworkMode::Egress,
                true,
                "why not",
            ),
            (
                &provider(true, false, true),
                NetworkMode::None,
                true,
                "cannot cut",
            ),
            (
                &provider(true, true, false),
                NetworkMode::Bridge,
                true,
                "has no",
            ),
            (
                &open,
                NetworkMode::AllowList,
                true,
                "cannot enforce NETWORK_MODE_ALLOW_LIST here (why not)",
            ),
        ] {
            let error = resolve_network(info, Some(asked), allow).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::FailedPrecondition);
            assert!(error.to_string().contains(says), "{error}");
        }
    }
}
