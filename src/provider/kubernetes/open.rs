//! Opening the provider (the API server's address and credentials, the
//! namespace), checking a spec before its sandbox is made, and describing
//! the provider to callers.

use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::broadcast;
use tracing::warn;

use super::{KubernetesProvider, KubernetesSettings, names};
use crate::error::{Error, Result};
use crate::provider::contract::ProviderInfo;
use crate::sandbox::{NetworkMode, SandboxSpec};

impl KubernetesProvider {
    /// A provider for the cluster `settings` name. Fails only on settings
    /// that cannot work (a kubeconfig that cannot be read); an API server
    /// that does not answer leaves the provider unavailable, saying why,
    /// until it does.
    pub async fn open(mut settings: KubernetesSettings) -> Result<Arc<Self>> {
        let config = match &settings.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path).map_err(|e| {
                    Error::invalid_argument(
                        "kube_config",
                        format!("cannot read the kubeconfig {}: {e}", path.display()),
                    )
                })?;
                let options = KubeConfigOptions {
                    context: settings.context.clone(),
                    ..Default::default()
                };
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| e.to_string())
            }
            None if settings.context.is_some() => {
                let options = KubeConfigOptions {
                    context: settings.context.clone(),
                    ..Default::default()
                };
                kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| e.to_string())
            }
            None => kube::Config::infer().await.map_err(|e| e.to_string()),
        };
        let server = config
            .as_ref()
            .map(|c| c.cluster_url.to_string())
            .unwrap_or_else(|_| "no API server".to_owned());
        if settings.namespace.is_empty() {
            settings.namespace = config
                .as_ref()
                .map(|c| c.default_namespace.clone())
                .unwrap_or_else(|_| "default".to_owned());
        }
        let client = config.and_then(|c| Client::try_from(c).map_err(|e| e.to_string()));
        if let Err(why) = &client {
            warn!(%why, "the kubernetes provider has no API server");
        }
        let (observations, _) = broadcast::channel(1024);
        let provider = Arc::new(Self {
            settings,
            server,
            client,
            reachable: RwLock::new((false, "not checked yet".to_owned())),
            deleting: Mutex::new(Default::default()),
            measuring: Mutex::new(Default::default()),
            observations,
        });
        provider.check_api_server().await;
        tokio::spawn(Self::watch_pods(Arc::downgrade(&provider)));
        Ok(provider)
    }

    /// Asks the API server for the namespace's sandbox pods, and records
    /// whether it answered.
    pub(super) async fn check_api_server(&self) {
        let answer = match self.api::<Pod>() {
            Ok(pods) => {
                let selector = names::selector(&self.settings.scope, names::ROLE_SANDBOX);
                match pods
                    .list(&ListParams::default().labels(&selector).limit(1))
                    .await
                {
                    Ok(_) => (true, String::new()),
                    Err(e) => (
                        false,
                        super::errors::api_error("listing pods", e)
                            .message()
                            .to_owned(),
                    ),
                }
            }
            Err(error) => (false, error.message().to_owned()),
        };
        *self.reachable.write().expect("reachable") = answer;
    }

    /// The RuntimeClasses requests may name, the default first.
    fn offered_runtimes(&self) -> Vec<String> {
        let mut offered: Vec<String> = self.settings.runtime_class.iter().cloned().collect();
        for class in &self.settings.runtime_classes {
            if !offered.contains(class) {
                offered.push(class.clone());
            }
        }
        offered
    }

    /// Completes `spec` (the default image and RuntimeClass) and refuses
    /// what a pod cannot be.
    pub(super) fn prepare_spec(&self, spec: &mut SandboxSpec) -> Result<()> {
        if spec.image.is_none() {
            spec.image = Some(self.settings.default_image.clone().ok_or_else(|| {
                Error::invalid_argument(
                    "image",
                    "provider kubernetes needs an image: name one, or start the server with \
                     --kube-default-image",
                )
            })?);
        }
        if spec.network == NetworkMode::AllowList {
            super::objects::allowed_ranges(&spec.allowed_hosts)?;
        }
        match &spec.runtime {
            None => spec.runtime = self.settings.runtime_class.clone(),
            Some(runtime) if !self.offered_runtimes().contains(runtime) => {
                let offered = self.offered_runtimes();
                return Err(Error::invalid_argument(
                    "runtime",
                    format!(
                        "RuntimeClass {:?} is not offered by this server; it offers {}",
                        crate::sandbox::rules::shorten(runtime),
                        if offered.is_empty() {
                            "none (the cluster's default runtime only)".to_owned()
                        } else {
                            offered.join(", ")
                        }
                    ),
                ));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// What callers are told about this provider.
    pub(super) fn describe(&self) -> ProviderInfo {
        let (reachable, why) = self.reachable.read().expect("reachable").clone();
        let mut detail = format!(
            "namespace {:?} on {}; tested against Paddock's test API server (tests/kube_api), \
             not yet against a live cluster; network modes are NetworkPolicies, enforced only \
             where the cluster's network plugin enforces NetworkPolicy; stop deletes the pod and \
             keeps the workdir and command output (on the sandbox's PersistentVolumeClaim), not \
             the rest of the root filesystem; process limits are the node's (kubelet \
             podPidsLimit), not per sandbox; usage is read by the agent from the pod's cgroup",
            self.settings.namespace, self.server
        );
        if !reachable {
            detail = format!("{why}; {detail}");
        }
        ProviderInfo {
            name: Self::NAME.to_owned(),
            available: reachable,
            detail,
            isolation: format!(
                "pod: each sandbox is a pod with its own namespaces and cgroup on the cluster's \
                 runtime (a RuntimeClass such as gVisor or Kata where configured); commands run \
                 as root inside it with only the capabilities {}, no privilege escalation, the \
                 runtime's default seccomp profile, no service account token; CPU and memory \
                 limits as requests and limits",
                names::KEPT_CAPABILITIES.join(", ")
            ),
            capabilities: crate::provider::Provider::capabilities(self),
            runtimes: self.offered_runtimes(),
        }
    }
}
