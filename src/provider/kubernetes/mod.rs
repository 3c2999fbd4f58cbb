//! The `kubernetes` provider: one pod per sandbox in a namespace, Paddock's
//! agent as the sandbox container's PID 1, reached through the API server's
//! exec subresource.
//!
//! A sandbox is four objects named `paddock-<sandbox id>`, each labelled
//! with the store's scope and the sandbox id as Docker containers are: a
//! PersistentVolumeClaim (the workdir and the agent's state, kept across
//! stop and start), a NetworkPolicy (its network mode), a Secret (its
//! environment and its spec; made last, so a sandbox whose Secret exists is
//! complete) and, while it runs, its pod. Stop deletes the pod; start makes
//! it again from the Secret.

mod bridge;
mod errors;
mod lifecycle;
mod names;
mod objects;
mod open;
mod pod;
mod settings;
mod status;
mod usage;
mod watch;

use std::collections::HashSet;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

use super::contract::Observation;
use crate::error::{Error, Result};
use errors::{api_error, is_already_exists, is_not_found};
pub use names::{API_ACCESS, ApiAccess};
pub use settings::KubernetesSettings;
use status::PodState;

/// How long a sandbox's pod may take to run (scheduling, pulling, the
/// agent's copy) before its start fails.
const POD_START_TIMEOUT: Duration = Duration::from_secs(110);
/// How long a started agent may take to answer.
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a pod is looked at while waiting for it.
const POLL: Duration = Duration::from_millis(100);

/// A namespaced object of the API that the provider reads, makes and
/// deletes: a pod, Secret, claim or network policy.
trait Object:
    kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
{
}

impl<K> Object for K where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
{
}

/// Sandboxes as pods.
pub struct KubernetesProvider {
    /// The settings, the namespace resolved.
    settings: KubernetesSettings,
    /// The API server's address, for humans.
    server: String,
    /// The client, or why there is none.
    client: std::result::Result<Client, String>,
    /// Whether the API server answered, as last seen, and what it said.
    reachable: RwLock<(bool, String)>,
    /// Pods this server deletes (by uid): their ends are not news.
    deleting: Mutex<HashSet<String>>,
    /// Channels to agents that usage is read through, by sandbox id.
    measuring: Mutex<std::collections::HashMap<String, crate::agent_client::AgentChannel>>,
    observations: broadcast::Sender<Observation>,
}

impl std::fmt::Debug for KubernetesProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesProvider")
            .field("server", &self.server)
            .field("namespace", &self.settings.namespace)
            .finish_non_exhaustive()
    }
}

impl KubernetesProvider {
    /// The provider's name.
    pub const NAME: &'static str = "kubernetes";

    fn client(&self) -> Result<&Client> {
        self.client.as_ref().map_err(|why| {
            Error::unavailable(format!("the kubernetes provider has no API server: {why}"))
        })
    }

    fn api<K>(&self) -> Result<Api<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Ok(Api::namespaced(
            self.client()?.clone(),
            &self.settings.namespace,
        ))
    }

    /// The object `name`, or `None` when there is none.
    async fn get<K: Object>(&self, name: &str, what: &str) -> Result<Option<K>> {
        match self.api::<K>()?.get(name).await {
            Ok(object) => Ok(Some(object)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_error(&format!("reading {what} {name}"), e)),
        }
    }

    /// Makes `object`; one that exists already (an earlier attempt's) is
    /// kept.
    async fn make<K: Object>(&self, object: &K, what: &str) -> Result<()> {
        match self
            .api::<K>()?
            .create(&PostParams::default(), object)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_already_exists(&e) => Ok(()),
            Err(e) => Err(api_error(&format!("making {what}"), e)),
        }
    }

    /// Deletes `name`; a missing one is fine.
    async fn remove<K: Object>(&self, name: &str, params: &DeleteParams, what: &str) -> Result<()> {
        match self.api::<K>()?.delete(name, params).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_error(&format!("deleting {what} {name}"), e)),
        }
    }

    /// The sandbox's Secret, or NOT_FOUND saying its objects are gone.
    async fn secret_of(&self, sandbox_id: &str) -> Result<Secret> {
        let name = names::object_name(sandbox_id)?;
        self.get::<Secret>(&name, "the Secret of sandbox")
            .await?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "the Kubernetes objects of sandbox {sandbox_id} are gone"
                ))
            })
    }

    /// Deletes the pod `pod`, noting that its end is this server's doing.
    async fn delete_pod(&self, pod: &Pod, grace_seconds: u32) -> Result<()> {
        if let Some(uid) = &pod.metadata.uid {
            self.deleting.lock().expect("deleting").insert(uid.clone());
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.remove::<Pod>(
            &name,
            &DeleteParams::default().grace_period(grace_seconds),
            "pod",
        )
        .await
    }

    /// Waits until the pod `name` runs; fails with its reason when it ends
    /// or is stuck.
    async fn wait_running(&self, sandbox_id: &str, name: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + POD_START_TIMEOUT;
        loop {
            let pod = self.get::<Pod>(name, "pod").await?.ok_or_else(|| {
                Error::failed_precondition(format!(
                    "sandbox {sandbox_id} cannot start: its pod was deleted while starting"
                ))
            })?;
            match status::state_of(&pod) {
                PodState::Running => return Ok(()),
                PodState::Stuck(reason) | PodState::Ended(reason) => {
                    return Err(Error::failed_precondition(format!(
                        "sandbox {sandbox_id} cannot start: {reason}"
                    )));
                }
                PodState::Pending if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::unavailable(format!(
                        "sandbox {sandbox_id} cannot start: its pod {name} did not run within \
                         {} (look at `kubectl describe pod {name}`)",
                        humantime::format_duration(POD_START_TIMEOUT)
                    )));
                }
                PodState::Pending => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Waits until the pod `name` is gone.
    async fn wait_gone(&self, name: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(objects::STOP_GRACE_SECONDS as u64 + 30);
        while self.get::<Pod>(name, "pod").await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::unavailable(format!(
                    "the pod {name} is still there 30 s after its grace period"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}
