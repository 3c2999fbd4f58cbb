//! The Kubernetes provider's settings: flags, variables and file keys, and
//! what they resolve to.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;
use k8s_openapi::api::core::v1::Toleration;
use serde::{Deserialize, Serialize};

/// The Kubernetes provider's settings as given.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
pub struct KubeArgs {
    /// A kubeconfig file for the kubernetes provider; it is opened when
    /// this, --kube-context or --kube-namespace is set, or --provider is
    /// kubernetes [default: in-cluster configuration, else $KUBECONFIG or
    /// ~/.kube/config].
    #[arg(long, env = "PADDOCK_KUBE_CONFIG", value_name = "FILE")]
    pub kube_config: Option<PathBuf>,

    /// The kubeconfig context [default: its current context].
    #[arg(long, env = "PADDOCK_KUBE_CONTEXT", value_name = "NAME")]
    pub kube_context: Option<String>,

    /// The namespace of sandbox pods [default: the configuration's
    /// namespace].
    #[arg(long, env = "PADDOCK_KUBE_NAMESPACE", value_name = "NAME")]
    pub kube_namespace: Option<String>,

    /// The Paddock image whose binary an init container copies into each
    /// sandbox pod as its agent [default: paddock:VERSION of this server].
    #[arg(long, env = "PADDOCK_KUBE_AGENT_IMAGE", value_name = "IMAGE")]
    pub kube_agent_image: Option<String>,

    /// The image of Kubernetes sandboxes whose request names none [default:
    /// none, requests must name one].
    #[arg(long, env = "PADDOCK_KUBE_DEFAULT_IMAGE", value_name = "IMAGE")]
    pub kube_default_image: Option<String>,

    /// The RuntimeClass of sandbox pods whose request names none, such as
    /// gvisor or kata [default: the cluster's default runtime].
    #[arg(long, env = "PADDOCK_KUBE_RUNTIME_CLASS", value_name = "NAME")]
    pub kube_runtime_class: Option<String>,

    /// Other RuntimeClasses (comma-separated) a request may name in
    /// `runtime` [default: none but the default].
    #[arg(
        long,
        env = "PADDOCK_KUBE_RUNTIME_CLASSES",
        value_delimiter = ',',
        value_name = "NAMES"
    )]
    pub kube_runtime_classes: Option<Vec<String>>,

    /// The storage class of sandbox workspaces and volumes [default: the
    /// cluster's default].
    #[arg(long, env = "PADDOCK_KUBE_STORAGE_CLASS", value_name = "NAME")]
    pub kube_storage_class: Option<String>,

    /// The size each sandbox's workspace claim asks for [default: 1Gi].
    #[arg(long, env = "PADDOCK_KUBE_WORKSPACE_SIZE", value_name = "QUANTITY")]
    pub kube_workspace_size: Option<String>,

    /// The size a named volume's claim asks for [default: 1Gi].
    #[arg(long, env = "PADDOCK_KUBE_VOLUME_SIZE", value_name = "QUANTITY")]
    pub kube_volume_size: Option<String>,

    /// Labels a node must have to run sandbox pods: the config file's
    /// [kube_node_selector] table (no flag).
    #[arg(skip)]
    pub kube_node_selector: Option<BTreeMap<String, String>>,

    /// Taints sandbox pods tolerate: the config file's kube_tolerations, an
    /// array of Kubernetes tolerations (no flag).
    #[arg(skip)]
    pub kube_tolerations: Option<Vec<BTreeMap<String, toml::Value>>>,
}

/// The keys of [`KubeArgs`] that only the config file sets.
pub(super) const FILE_ONLY_KEYS: [&str; 2] = ["kube_node_selector", "kube_tolerations"];

/// The Kubernetes provider's resolved settings.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// The kubeconfig file; `None`: inferred.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context; `None`: its current one.
    pub context: Option<String>,
    /// The namespace; empty: the configuration's.
    pub namespace: String,
    /// The image the agent is copied from.
    pub agent_image: String,
    /// The image of sandboxes whose request names none.
    pub default_image: Option<String>,
    /// The default RuntimeClass.
    pub runtime_class: Option<String>,
    /// The other RuntimeClasses requests may name.
    pub runtime_classes: Vec<String>,
    /// The storage class of claims.
    pub storage_class: Option<String>,
    /// The size of workspace claims.
    pub workspace_size: String,
    /// The size of named volumes' claims.
    pub volume_size: String,
    /// Labels a node must have.
    pub node_selector: BTreeMap<String, String>,
    /// Taints tolerated.
    pub tolerations: Vec<Toleration>,
}

/// The provider's settings when it is asked for (`chosen`: --provider
/// kubernetes), `None` when it is not.
pub(super) fn resolve(args: KubeArgs, chosen: bool) -> anyhow::Result<Option<KubernetesConfig>> {
    let wanted = chosen
        || args.kube_config.is_some()
        || args.kube_context.is_some()
        || args.kube_namespace.is_some();
    if !wanted {
        return Ok(None);
    }
    let nonempty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let quantity = |key: &str, value: Option<String>| -> anyhow::Result<String> {
        let value = nonempty(value).unwrap_or_else(|| "1Gi".to_owned());
        let (number, unit) = value.split_at(
            value
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(value.len()),
        );
        let units = ["", "Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T"];
        if number.is_empty() || !units.contains(&unit) {
            bail!("{key}: {value:?} is not a size such as 512Mi or 10Gi");
        }
        Ok(value)
    };
    let check_image = |key: &str, image: &Option<String>| -> anyhow::Result<()> {
        if let Some(image) = image {
            crate::sandbox::rules::check_image(key, image).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    };
    let agent_image = nonempty(args.kube_agent_image)
        .unwrap_or_else(|| format!("paddock:{}", env!("CARGO_PKG_VERSION")));
    check_image("kube_agent_image", &Some(agent_image.clone()))?;
    let default_image = nonempty(args.kube_default_image);
    check_image("kube_default_image", &default_image)?;
    let runtime_classes: Vec<String> = args
        .kube_runtime_classes
        .unwrap_or_default()
        .into_iter()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    let runtime_class = nonempty(args.kube_runtime_class);
    for name in runtime_class.iter().chain(&runtime_classes) {
        crate::sandbox::rules::check_runtime("kube_runtime_class", name)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(Some(KubernetesConfig {
        kubeconfig: args.kube_config,
        context: nonempty(args.kube_context),
        namespace: nonempty(args.kube_namespace).unwrap_or_default(),
        agent_image,
        default_image,
        runtime_class,
        runtime_classes,
        storage_class: nonempty(args.kube_storage_class),
        workspace_size: quantity("kube_workspace_size", args.kube_workspace_size)?,
        volume_size: quantity("kube_volume_size", args.kube_volume_size)?,
        node_selector: args.kube_node_selector.unwrap_or_default(),
        tolerations: args
            .kube_tolerations
            .unwrap_or_default()
            .into_iter()
            .map(toleration)
            .collect::<anyhow::Result<_>>()?,
    }))
}

/// One entry of `kube_tolerations`, its keys checked (a misspelt key would
/// otherwise vanish and leave a toleration that matches something else).
fn toleration(entry: BTreeMap<String, toml::Value>) -> anyhow::Result<Toleration> {
    const KEYS: [&str; 5] = ["key", "operator", "value", "effect", "tolerationSeconds"];
    if let Some(unknown) = entry.keys().find(|key| !KEYS.contains(&key.as_str())) {
        bail!(
            "kube_tolerations: {unknown:?} is not a toleration field; the fields are {}",
            KEYS.join(", ")
        );
    }
    let json = serde_json::to_value(&entry)?;
    serde_json::from_value(json).map_err(|e| anyhow::anyhow!("kube_tolerations: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_are_checked_field_by_field() {
        let entry: BTreeMap<String, toml::Value> =
            toml::from_str("key = \"pool\"\noperator = \"Exists\"\neffect = \"NoSchedule\"")
                .unwrap();
        let parsed = toleration(entry).unwrap();
        assert_eq!(parsed.operator.as_deref(), Some("Exists"));
        let typo: BTreeMap<String, toml::Value> =
            toml::from_str("key = \"pool\"\noperatr = \"Exists\"").unwrap();
        let error = toleration(typo).unwrap_err().to_string();
        assert!(
            error.contains("\"operatr\" is not a toleration field"),
            "{error}"
        );
    }
}
