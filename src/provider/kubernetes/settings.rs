//! The Kubernetes provider's settings: where sandboxes go and what they
//! are made of.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;

use crate::provider::contract::AgentLaunch;

/// Where sandboxes go and what they are made of.
#[derive(Debug, Clone)]
pub struct KubernetesSettings {
    /// A kubeconfig file; `None`: in-cluster configuration, else
    /// `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context; `None`: its current context.
    pub context: Option<String>,
    /// The namespace of sandboxes; empty: the configuration's namespace.
    pub namespace: String,
    /// The Paddock image, whose binary the init container copies into each
    /// pod.
    pub agent_image: String,
    /// The image of sandboxes whose request names none.
    pub default_image: Option<String>,
    /// The agent's limits (its binary comes from `agent_image`).
    pub agent: AgentLaunch,
    /// The identity of the store, on every object as `io.paddock.scope`.
    pub scope: String,
    /// The size each sandbox's workspace claim asks for, such as "1Gi".
    pub workspace_size: String,
    /// The size a named volume's claim asks for.
    pub volume_size: String,
    /// The storage class of claims; `None`: the cluster's default.
    pub storage_class: Option<String>,
    /// The RuntimeClass of sandboxes whose request names none.
    pub runtime_class: Option<String>,
    /// The other RuntimeClasses requests may name.
    pub runtime_classes: Vec<String>,
    /// Labels a node must have to run sandboxes.
    pub node_selector: BTreeMap<String, String>,
    /// Taints sandbox pods tolerate.
    pub tolerations: Vec<Toleration>,
    /// The ranges EGRESS sandboxes may not reach.
    pub egress_blocked: Vec<crate::sandbox::network::Ipv4Cidr>,
}

/// Settings for the builders' unit tests.
#[cfg(test)]
pub(super) fn test_settings() -> KubernetesSettings {
    KubernetesSettings {
        kubeconfig: None,
        context: None,
        namespace: "sandboxes".into(),
        agent_image: "paddock:1.2.3".into(),
        default_image: None,
        agent: AgentLaunch {
            binary: "/unused".into(),
            max_commands: 7,
            output_budget: 9 << 20,
        },
        scope: "store-1".into(),
        workspace_size: "2Gi".into(),
        volume_size: "5Gi".into(),
        storage_class: Some("fast".into()),
        runtime_class: None,
        runtime_classes: Vec::new(),
        node_selector: BTreeMap::from([("pool".into(), "sandboxes".into())]),
        tolerations: vec![Toleration {
            key: Some("sandboxes".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }],
        egress_blocked: crate::sandbox::network::Ipv4Cidr::default_egress_blocked(),
    }
}
