//! The objects a sandbox is made of, as pure functions of its spec and the
//! server's settings (tested below without an API server): a Secret holding
//! its environment and spec, a claim for its workspace and the agent's
//! state, a NetworkPolicy for its network mode, and its pod.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Secret, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};

use super::names::{self, ANNOTATION_TENANT};
use super::settings::KubernetesSettings;
use crate::error::{Error, Result};
use crate::sandbox::network::Ipv4Cidr;
use crate::sandbox::{NetworkMode, SandboxSpec};

/// How long a deleted pod's agent may take to end its commands.
pub(super) const STOP_GRACE_SECONDS: i64 = 5;

/// What the sandbox's Secret records besides its environment: enough to
/// make its pod again after a stop, without the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Recorded {
    pub tenant: String,
    /// The spec with its environment's values left out (they are the
    /// Secret's `env.NAME` keys).
    pub spec: SandboxSpec,
}

/// The metadata of a sandbox's object `name`.
pub(super) fn metadata(
    name: &str,
    settings: &KubernetesSettings,
    id: &str,
    tenant: &str,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(settings.namespace.clone()),
        labels: Some(names::sandbox_labels(&settings.scope, id, tenant)),
        annotations: Some(BTreeMap::from([(
            ANNOTATION_TENANT.to_owned(),
            tenant.to_owned(),
        )])),
        ..Default::default()
    }
}

/// The Secret of a sandbox: each environment variable under `env.NAME`,
/// and its spec without their values under `sandbox.json`. Made last by
/// create: a sandbox's objects are complete once it exists.
pub(super) fn secret(
    id: &str,
    tenant: &str,
    spec: &SandboxSpec,
    settings: &KubernetesSettings,
) -> Result<Secret> {
    let name = names::object_name(id)?;
    let mut data: BTreeMap<String, ByteString> = spec
        .env
        .iter()
        .map(|(key, value)| {
            (
                format!("{}{key}", names::ENV_KEY_PREFIX),
                ByteString(value.clone().into_bytes()),
            )
        })
        .collect();
    let recorded = Recorded {
        tenant: tenant.to_owned(),
        spec: SandboxSpec {
            env: spec
                .env
                .keys()
                .map(|k| (k.clone(), String::new()))
                .collect(),
            ..spec.clone()
        },
    };
    let json = serde_json::to_vec(&recorded)
        .map_err(|e| Error::internal("recording a sandbox's spec", e))?;
    data.insert(names::SPEC_KEY.to_owned(), ByteString(json));
    Ok(Secret {
        metadata: metadata(&name, settings, id, tenant),
        type_: Some("Opaque".to_owned()),
        immutable: Some(true),
        data: Some(data),
        ..Default::default()
    })
}

/// What the Secret `secret` recorded, or why it cannot be read.
pub(super) fn recorded(secret: &Secret) -> Result<Recorded> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(names::SPEC_KEY))
        .ok_or_else(|| {
            Error::internal("reading a sandbox's Secret", "it records no sandbox spec")
        })?;
    serde_json::from_slice(&bytes.0).map_err(|e| Error::internal("reading a sandbox's Secret", e))
}

/// The claim that holds the sandbox's workspace and its agent's state
/// (command records, output logs), kept across stop and start.
pub(super) fn workspace_claim(
    id: &str,
    tenant: &str,
    settings: &KubernetesSettings,
) -> Result<PersistentVolumeClaim> {
    let name = names::object_name(id)?;
    Ok(claim(
        metadata(&name, settings, id, tenant),
        settings,
        &settings.workspace_size,
    ))
}

/// The claim of a named volume, shared by the sandboxes that mount it and
/// kept when they go.
pub(super) fn volume_claim(volume: &str, settings: &KubernetesSettings) -> PersistentVolumeClaim {
    let metadata = ObjectMeta {
        name: Some(names::volume_claim_name(volume)),
        namespace: Some(settings.namespace.clone()),
        labels: Some(BTreeMap::from([
            (names::LABEL_SCOPE.to_owned(), settings.scope.clone()),
            (names::LABEL_ROLE.to_owned(), names::ROLE_VOLUME.to_owned()),
        ])),
        annotations: Some(BTreeMap::from([(
            "io.paddock.volume".to_owned(),
            volume.to_owned(),
        )])),
        ..Default::default()
    };
    claim(metadata, settings, &settings.volume_size)
}

fn claim(metadata: ObjectMeta, settings: &KubernetesSettings, size: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: settings.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(size.to_owned()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The NetworkPolicy of the sandbox's network mode; `None` for BRIDGE,
/// which is the namespace's network as it is. Every mode but BRIDGE
/// refuses all traffic in. NONE refuses all out; EGRESS lets out to every
/// address but `blocked` (which should hold the cluster's pod, service and
/// node ranges, and link-local), and DNS to the cluster's resolver;
/// ALLOW_LIST lets out to its ranges only.
pub(super) fn network_policy(
    id: &str,
    tenant: &str,
    spec: &SandboxSpec,
    settings: &KubernetesSettings,
) -> Result<Option<NetworkPolicy>> {
    let egress = match spec.network {
        NetworkMode::Bridge => return Ok(None),
        NetworkMode::None => Vec::new(),
        NetworkMode::Egress => vec![
            NetworkPolicyEgressRule {
                to: Some(vec![NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: "0.0.0.0/0".to_owned(),
                        except: Some(
                            settings
                                .egress_blocked
                                .iter()
                                .map(Ipv4Cidr::to_string)
                                .collect(),
                        ),
                    }),
                    ..Default::default()
                }]),
                ports: None,
            },
            cluster_dns(),
        ],
        NetworkMode::AllowList => {
            let ranges = allowed_ranges(&spec.allowed_hosts)?;
            vec![NetworkPolicyEgressRule {
                to: Some(
                    ranges
                        .into_iter()
                        .map(|cidr| NetworkPolicyPeer {
                            ip_block: Some(IPBlock { cidr, except: None }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ports: None,
            }]
        }
    };
    let name = names::object_name(id)?;
    Ok(Some(NetworkPolicy {
        metadata: metadata(&name, settings, id, tenant),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    names::LABEL_SANDBOX_ID.to_owned(),
                    id.to_owned(),
                )])),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(Vec::new()),
            egress: Some(egress),
        }),
    }))
}

/// DNS to the cluster's resolver (kube-dns in kube-system), for names.
fn cluster_dns() -> NetworkPolicyEgressRule {
    let port = |protocol: &str| NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(53)),
        end_port: None,
    };
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "kubernetes.io/metadata.name".to_owned(),
                    "kube-system".to_owned(),
                )])),
                ..Default::default()
            }),
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "k8s-app".to_owned(),
                    "kube-dns".to_owned(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![port("UDP"), port("TCP")]),
    }
}

/// The IPv4 ranges of an ALLOW_LIST; INVALID_ARGUMENT for a name, which a
/// NetworkPolicy cannot hold.
pub(super) fn allowed_ranges(hosts: &[String]) -> Result<Vec<String>> {
    hosts
        .iter()
        .map(|host| match host.parse::<Ipv4Cidr>() {
            Ok(range) => Ok(range.to_string()),
            Err(_) => Err(Error::invalid_argument(
                "allowed_hosts",
                format!(
                    "{:?} is a name; on the kubernetes provider an allow list holds IPv4 ranges \
                     only (a NetworkPolicy cannot match names)",
                    crate::sandbox::rules::shorten(host)
                ),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::kubernetes::settings::test_settings;

    const ID: &str = "sbx_0123456789abcdef0123456789abcdef";

    fn policy(network: NetworkMode, allowed_hosts: &[&str]) -> Result<Option<NetworkPolicy>> {
        let spec = SandboxSpec {
            network,
            allowed_hosts: allowed_hosts.iter().map(|h| (*h).to_owned()).collect(),
            ..SandboxSpec::default()
        };
        network_policy(ID, "team-a", &spec, &test_settings())
    }

    #[test]
    fn network_modes_become_policies() {
        assert!(policy(NetworkMode::Bridge, &[]).unwrap().is_none());
        let none = policy(NetworkMode::None, &[])
            .unwrap()
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(none.policy_types.unwrap(), ["Ingress", "Egress"]);
        assert!(none.ingress.unwrap().is_empty());
        assert!(none.egress.unwrap().is_empty());
        let selector = none.pod_selector.unwrap().match_labels.unwrap();
        assert_eq!(selector["io.paddock.sandbox-id"], ID);
        let egress = policy(NetworkMode::Egress, &[])
            .unwrap()
            .unwrap()
            .spec
            .unwrap();
        let rules = egress.egress.unwrap();
        let block = rules[0].to.as_ref().unwrap()[0].ip_block.clone().unwrap();
        assert_eq!(block.cidr, "0.0.0.0/0");
        let except = block.except.unwrap();
        for range in ["10.0.0.0/8", "169.254.0.0/16", "192.168.0.0/16"] {
            assert!(except.contains(&range.to_owned()), "{range} in {except:?}");
        }
        assert_eq!(
            rules[1].ports.as_ref().unwrap().len(),
            2,
            "DNS by UDP and TCP"
        );
        let allow = policy(NetworkMode::AllowList, &["93.184.216.0/24"])
            .unwrap()
            .unwrap()
            .spec
            .unwrap();
        let peers = allow.egress.unwrap()[0].to.clone().unwrap();
        assert_eq!(peers[0].ip_block.as_ref().unwrap().cidr, "93.184.216.0/24");
        let named = policy(NetworkMode::AllowList, &["pypi.org"]).unwrap_err();
        assert!(
            named.message().contains("IPv4 ranges only"),
            "{}",
            named.message()
        );
    }

    #[test]
    fn the_secret_records_the_spec_and_holds_the_env() {
        let spec = SandboxSpec {
            image: Some("busybox".into()),
            env: BTreeMap::from([("A".into(), "1".into())]),
            ..SandboxSpec::default()
        };
        let secret = secret(ID, "team-a", &spec, &test_settings()).unwrap();
        let data = secret.data.clone().unwrap();
        assert_eq!(data["env.A"].0, b"1");
        let recorded = recorded(&secret).unwrap();
        assert_eq!(recorded.tenant, "team-a");
        assert_eq!(recorded.spec.image.as_deref(), Some("busybox"));
        assert_eq!(recorded.spec.env["A"], "", "values only under env.*");
        let claim = workspace_claim(ID, "team-a", &test_settings()).unwrap();
        let claim_spec = claim.spec.unwrap();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec.resources.unwrap().requests.unwrap()["storage"].0,
            "2Gi"
        );
    }
}
