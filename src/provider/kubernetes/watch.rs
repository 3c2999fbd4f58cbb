//! Following the namespace's sandbox pods: evictions, OOM kills, image pull
//! failures and deletions behind Paddock's back become observations, and a
//! watch that lost events asks for a resync.

use std::collections::HashSet;
use std::sync::Weak;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::watcher::{self, Event};
use tracing::{debug, warn};

use super::status::{self, PodState};
use super::{KubernetesProvider, names};
use crate::provider::contract::Observation;

/// What an event says about one sandbox pod.
struct About {
    sandbox_id: String,
    tenant: String,
    uid: String,
}

fn about(pod: &Pod) -> Option<About> {
    let meta = &pod.metadata;
    Some(About {
        sandbox_id: meta.labels.as_ref()?.get(names::LABEL_SANDBOX_ID)?.clone(),
        tenant: meta
            .annotations
            .as_ref()?
            .get(names::ANNOTATION_TENANT)?
            .clone(),
        uid: meta.uid.clone()?,
    })
}

impl KubernetesProvider {
    /// Watches the sandbox pods of this scope until the provider is
    /// dropped; the watcher lists again after an error, which is a resync.
    pub(super) async fn watch_pods(provider: Weak<Self>) {
        let Some(pods) = provider.upgrade().and_then(|p| p.api::<Pod>().ok()) else {
            return;
        };
        let selector = provider
            .upgrade()
            .map(|p| names::selector(&p.settings.scope, names::ROLE_SANDBOX))
            .unwrap_or_default();
        let config = watcher::Config::default().labels(&selector);
        let mut events = std::pin::pin!(watcher::watcher(pods, config));
        // Pods already reported as ended.
        let mut reported: HashSet<String> = HashSet::new();
        let mut listed_once = false;
        while let Some(event) = events.next().await {
            let Some(provider) = provider.upgrade() else {
                return;
            };
            match event {
                Ok(Event::Apply(pod) | Event::InitApply(pod)) => {
                    provider.on_pod(&pod, &mut reported);
                }
                Ok(Event::Delete(pod)) => provider.on_deleted(&pod, &mut reported).await,
                Ok(Event::Init) => {}
                Ok(Event::InitDone) => {
                    *provider.reachable.write().expect("reachable") = (true, String::new());
                    if listed_once {
                        // Listed again after losing the watch: events may
                        // have been missed.
                        let _ = provider.observations.send(Observation::Resync);
                    }
                    listed_once = true;
                }
                Err(error) => {
                    warn!(%error, "the watch on sandbox pods failed; listing again");
                    provider.check_api_server().await;
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn on_pod(&self, pod: &Pod, reported: &mut HashSet<String>) {
        let Some(about) = about(pod) else { return };
        if self.deleting.lock().expect("deleting").contains(&about.uid) {
            return;
        }
        if let PodState::Ended(reason) = status::state_of(pod)
            && reported.insert(about.uid)
        {
            debug!(sandbox_id = %about.sandbox_id, %reason, "sandbox pod ended");
            let _ = self.observations.send(Observation::Stopped {
                tenant: about.tenant,
                sandbox_id: about.sandbox_id,
                reason,
            });
        }
    }

    async fn on_deleted(&self, pod: &Pod, reported: &mut HashSet<String>) {
        let Some(about) = about(pod) else { return };
        reported.remove(&about.uid);
        if self.deleting.lock().expect("deleting").remove(&about.uid) {
            return;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        // A new pod of the sandbox may already be there (a start after a
        // stop): the old one's end is no news then.
        if matches!(self.get::<Pod>(&name, "pod").await, Ok(Some(_))) {
            return;
        }
        let observation = match self.get::<Secret>(&name, "Secret").await {
            Ok(Some(_)) => Observation::Stopped {
                tenant: about.tenant,
                sandbox_id: about.sandbox_id,
                reason: "its pod was deleted outside Paddock (its workdir is kept: start it \
                         again)"
                    .to_owned(),
            },
            Ok(None) => Observation::Removed {
                tenant: about.tenant,
                sandbox_id: about.sandbox_id,
                reason: "its pod and Secret were deleted outside Paddock".to_owned(),
            },
            Err(_) => Observation::Resync,
        };
        let _ = self.observations.send(observation);
    }
}
