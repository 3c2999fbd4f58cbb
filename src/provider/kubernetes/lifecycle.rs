//! The provider contract on Kubernetes: objects made, pods started and
//! deleted, found and listed.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, PostParams};
use tokio::sync::broadcast;
use tracing::{debug, instrument};

use super::errors::api_error;
use super::status::{self, PodState};
use super::{AGENT_READY_TIMEOUT, KubernetesProvider, bridge, names, objects, pod, usage};
use crate::agent_client::{AgentChannel, AgentClient};
use crate::error::{Error, Result};
use crate::provider::contract::{
    Capabilities, Observation, Observed, Provider, ProviderInfo, ProvisionRequest, Usage,
};
use crate::sandbox::{SandboxSpec, Volume};

/// How old a half-made sandbox's objects (no Secret) must be before a
/// listing clears them: younger ones may be a create still under way on
/// another replica.
const HALF_MADE_AGE: std::time::Duration = std::time::Duration::from_secs(120);

#[async_trait]
impl Provider for KubernetesProvider {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tty: true,
            signals: true,
            stop_start: true,
            volumes: true,
            network_none: true,
            network_egress: true,
            network_bridge: true,
            network_allow_list: true,
            resource_limits: true,
            images: true,
            exec: true,
            files: true,
            port_forward: true,
            read_only_root: true,
            // No engine to build on or commit with: images come from a
            // registry the cluster pulls from.
            template_builds: false,
            snapshots: false,
        }
    }

    async fn info(&self) -> ProviderInfo {
        self.describe()
    }

    async fn prepare(&self, spec: &mut SandboxSpec) -> Result<()> {
        self.prepare_spec(spec)
    }

    #[instrument(name = "provider.kubernetes.create", skip_all, fields(sandbox_id = request.sandbox_id))]
    async fn create(&self, request: ProvisionRequest<'_>) -> Result<String> {
        let (id, tenant, spec) = (request.sandbox_id, request.tenant, request.spec);
        let name = names::object_name(id)?;
        let secret = objects::secret(id, tenant, spec, &self.settings)?;
        // The pod is made at start; a dry run now lets the API server refuse
        // a pod it would never accept before anything is made.
        let pod = pod::pod(id, &objects::recorded(&secret)?, &self.settings)?;
        self.api::<Pod>()?
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &pod,
            )
            .await
            .map_err(|e| api_error("checking the sandbox's pod", e))?;
        for volume in &spec.volumes {
            self.make(
                &objects::volume_claim(&volume.object_name(), &self.settings),
                "a volume's claim",
            )
            .await?;
        }
        self.make(
            &objects::workspace_claim(id, tenant, &self.settings)?,
            "the workspace claim",
        )
        .await?;
        if let Some(policy) = objects::network_policy(id, tenant, spec, &self.settings)? {
            self.make(&policy, "the network policy").await?;
        }
        self.make(&secret, "the sandbox's Secret").await?;
        debug!(%name, "sandbox objects made");
        Ok(name)
    }

    #[instrument(name = "provider.kubernetes.start", skip(self))]
    async fn start(&self, sandbox_id: &str) -> Result<AgentChannel> {
        let secret = self.secret_of(sandbox_id).await?;
        let name = names::object_name(sandbox_id)?;
        let pods = self.api::<Pod>()?;
        if let Some(existing) = self.get::<Pod>(&name, "pod").await?
            && matches!(status::state_of(&existing), PodState::Ended(_))
        {
            // An ended pod does not run again: make a new one.
            self.delete_pod(&existing, 0).await?;
            self.wait_gone(&name).await?;
        }
        let pod = pod::pod(sandbox_id, &objects::recorded(&secret)?, &self.settings)?;
        self.make(&pod, "the sandbox's pod").await?;
        self.wait_running(sandbox_id, &name).await?;
        let channel = bridge::agent_channel(pods, name.clone());
        let agent = AgentClient::new(channel.clone());
        match tokio::time::timeout(AGENT_READY_TIMEOUT, agent.answers(sandbox_id)).await {
            Ok(Ok(())) => Ok(channel),
            Ok(Err(error)) => Err(Error::unavailable(format!(
                "the agent of sandbox {sandbox_id} does not answer in pod {name}: {}",
                error.message()
            ))),
            Err(_) => Err(Error::unavailable(format!(
                "the agent of sandbox {sandbox_id} gave no answer within {} in pod {name}",
                humantime::format_duration(AGENT_READY_TIMEOUT)
            ))),
        }
    }

    #[instrument(name = "provider.kubernetes.stop", skip(self))]
    async fn stop(&self, sandbox_id: &str) -> Result<()> {
        self.secret_of(sandbox_id).await?;
        let name = names::object_name(sandbox_id)?;
        let Some(pod) = self.get::<Pod>(&name, "pod").await? else {
            return Ok(());
        };
        self.delete_pod(&pod, objects::STOP_GRACE_SECONDS as u32)
            .await?;
        self.wait_gone(&name).await
    }

    async fn create_volume(&self, volume_id: &str, tenant: &str) -> Result<()> {
        let _ = tenant;
        self.make(
            &objects::volume_claim(&Volume::object_name_of(volume_id), &self.settings),
            "a volume's claim",
        )
        .await
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<()> {
        let claim = names::volume_claim_name(&Volume::object_name_of(volume_id));
        self.remove::<PersistentVolumeClaim>(&claim, &DeleteParams::default(), "volume claim")
            .await
    }

    #[instrument(name = "provider.kubernetes.delete", skip(self))]
    async fn delete(&self, sandbox_id: &str) -> Result<()> {
        let name = names::object_name(sandbox_id)?;
        self.forget_channel(sandbox_id);
        if let Some(pod) = self.get::<Pod>(&name, "pod").await? {
            self.delete_pod(&pod, 0).await?;
        }
        let now = DeleteParams::default();
        self.remove::<Secret>(&name, &now, "Secret").await?;
        self.remove::<NetworkPolicy>(&name, &now, "network policy")
            .await?;
        self.remove::<PersistentVolumeClaim>(&name, &now, "claim")
            .await
    }

    async fn inspect(&self, sandbox_id: &str) -> Result<Option<Observed>> {
        let name = names::object_name(sandbox_id)?;
        if self.get::<Secret>(&name, "Secret").await?.is_none() {
            return Ok(None);
        }
        Ok(Some(Observed {
            sandbox_id: sandbox_id.to_owned(),
            running: self.pod_runs(&name).await?,
            provider_ref: name,
        }))
    }

    async fn connect(&self, sandbox_id: &str) -> Result<AgentChannel> {
        let name = names::object_name(sandbox_id)?;
        Ok(bridge::agent_channel(self.api::<Pod>()?, name))
    }

    async fn list(&self) -> Result<Vec<Observed>> {
        let selector = names::selector(&self.settings.scope, names::ROLE_SANDBOX);
        let params = ListParams::default().labels(&selector);
        let secrets = self
            .api::<Secret>()?
            .list(&params)
            .await
            .map_err(|e| api_error("listing sandbox Secrets", e))?;
        let pods = self
            .api::<Pod>()?
            .list(&params)
            .await
            .map_err(|e| api_error("listing sandbox pods", e))?;
        let sandbox_of = |meta: &kube::api::ObjectMeta| {
            meta.labels
                .as_ref()
                .and_then(|labels| labels.get(names::LABEL_SANDBOX_ID))
                .cloned()
        };
        let complete: std::collections::HashSet<String> = secrets
            .items
            .iter()
            .filter_map(|s| sandbox_of(&s.metadata))
            .collect();
        let running: std::collections::HashSet<String> = pods
            .items
            .iter()
            .filter(|pod| status::state_of(pod) == PodState::Running)
            .filter_map(|pod| sandbox_of(&pod.metadata))
            .collect();
        self.clear_half_made(&complete, &params).await?;
        Ok(complete
            .iter()
            .filter_map(|id| {
                Some(Observed {
                    provider_ref: names::object_name(id).ok()?,
                    sandbox_id: id.clone(),
                    running: running.contains(id),
                })
            })
            .collect())
    }

    async fn usage(&self, sandbox_id: &str) -> Result<Usage> {
        self.secret_of(sandbox_id).await?;
        let name = names::object_name(sandbox_id)?;
        let running = self.pod_runs(&name).await?;
        if !running {
            return Err(Error::failed_precondition(format!(
                "sandbox {sandbox_id} is not running, so it uses nothing"
            )));
        }
        let agent = AgentClient::new(self.measuring_channel(sandbox_id)?);
        usage::measure(&agent, sandbox_id).await
    }

    fn observe(&self) -> Option<broadcast::Receiver<Observation>> {
        Some(self.observations.subscribe())
    }
}

impl KubernetesProvider {
    /// Whether the pod `name` exists and its sandbox container runs.
    async fn pod_runs(&self, name: &str) -> Result<bool> {
        let pod = self.get::<Pod>(name, "pod").await?;
        Ok(pod.is_some_and(|pod| status::state_of(&pod) == PodState::Running))
    }

    /// The channel usage is measured through, kept per sandbox: each new
    /// one opens an exec stream through the API server.
    fn measuring_channel(&self, sandbox_id: &str) -> Result<AgentChannel> {
        let mut channels = self.measuring.lock().expect("measuring channels");
        if let Some(channel) = channels.get(sandbox_id) {
            return Ok(channel.clone());
        }
        let channel = bridge::agent_channel(self.api::<Pod>()?, names::object_name(sandbox_id)?);
        channels.insert(sandbox_id.to_owned(), channel.clone());
        Ok(channel)
    }

    fn forget_channel(&self, sandbox_id: &str) {
        self.measuring
            .lock()
            .expect("measuring channels")
            .remove(sandbox_id);
    }

    /// Deletes the objects of sandboxes whose Secret was never made (a
    /// create cut short), once they are old enough not to be a create
    /// still under way.
    async fn clear_half_made(
        &self,
        complete: &std::collections::HashSet<String>,
        params: &ListParams,
    ) -> Result<()> {
        let claims = self
            .api::<PersistentVolumeClaim>()?
            .list(params)
            .await
            .map_err(|e| api_error("listing sandbox claims", e))?;
        let policies = self
            .api::<NetworkPolicy>()?
            .list(params)
            .await
            .map_err(|e| api_error("listing sandbox network policies", e))?;
        let now = k8s_openapi::jiff::Timestamp::now();
        let mut half_made = std::collections::BTreeSet::new();
        let metas = claims
            .items
            .iter()
            .map(|c| &c.metadata)
            .chain(policies.items.iter().map(|p| &p.metadata));
        for meta in metas {
            let Some(id) = meta
                .labels
                .as_ref()
                .and_then(|l| l.get(names::LABEL_SANDBOX_ID))
            else {
                continue;
            };
            let old_enough = meta.creation_timestamp.as_ref().is_some_and(|created| {
                now.duration_since(created.0).unsigned_abs() >= HALF_MADE_AGE
            });
            if !complete.contains(id) && old_enough {
                half_made.insert(id.clone());
            }
        }
        for id in half_made {
            debug!(sandbox_id = %id, "clearing a half-made sandbox's objects");
            self.delete(&id).await?;
        }
        Ok(())
    }
}
