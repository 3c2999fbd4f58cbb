//! The names and labels of a sandbox's objects in the namespace, and the
//! API access the provider needs (the chart's Role grants exactly this; a
//! test compares the two).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
pub(super) use crate::provider::layout::{
    AGENT_BINARY, AGENT_DIR, AGENT_SOCKET, KEPT_CAPABILITIES, LABEL_ROLE, LABEL_SANDBOX_ID,
    LABEL_SCOPE, LABEL_TENANT, ROLE_SANDBOX, STATE_DIR,
};

/// The role of a named volume's claim, kept when its sandboxes go.
pub(super) const ROLE_VOLUME: &str = "volume";
/// The annotation that holds the tenant (a label holds it too when the
/// tenant's name is a valid label value).
pub(super) const ANNOTATION_TENANT: &str = "io.paddock.tenant";
/// The sandbox's container in its pod.
pub(super) const SANDBOX_CONTAINER: &str = "sandbox";
/// The init container that copies the agent into the pod.
pub(super) const INSTALL_CONTAINER: &str = "install-agent";
/// Where the Paddock image keeps its binary.
pub(super) const IMAGE_BINARY: &str = "/usr/local/bin/paddock";
/// The key of the sandbox's Secret that holds its spec (without env).
pub(super) const SPEC_KEY: &str = "sandbox.json";
/// The prefix of the Secret's keys that hold environment variables.
pub(super) const ENV_KEY_PREFIX: &str = "env.";

/// The name of every object of `sandbox_id`: its pod, Secret, workspace
/// claim and network policy (`sbx_…` becomes `paddock-sbx-…`, a DNS label).
pub(super) fn object_name(sandbox_id: &str) -> Result<String> {
    if !crate::ids::is_sandbox_id(sandbox_id) {
        return Err(Error::internal(
            "naming a sandbox's objects",
            format!("malformed sandbox id {sandbox_id:?}"),
        ));
    }
    Ok(format!("paddock-{}", sandbox_id.replace('_', "-")))
}

/// The claim of the named volume `name`: a DNS label made of the name and
/// a digest of it, since volume names may hold capitals and '_' and '.'.
pub(super) fn volume_claim_name(name: &str) -> String {
    let readable: String = name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(32)
        .collect();
    let digest = Sha256::digest(name.as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("paddock-volume-{}-{tag}", readable.trim_matches('-'))
}

/// The labels of a sandbox's objects; the tenant only when it is a valid
/// label value (the annotation always has it).
pub(super) fn sandbox_labels(
    scope: &str,
    sandbox_id: &str,
    tenant: &str,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_SCOPE.to_owned(), scope.to_owned()),
        (LABEL_ROLE.to_owned(), ROLE_SANDBOX.to_owned()),
        (LABEL_SANDBOX_ID.to_owned(), sandbox_id.to_owned()),
    ]);
    if is_label_value(tenant) {
        labels.insert(LABEL_TENANT.to_owned(), tenant.to_owned());
    }
    labels
}

/// The selector of this scope's objects of `role`.
pub(super) fn selector(scope: &str, role: &str) -> String {
    format!("{LABEL_SCOPE}={scope},{LABEL_ROLE}={role}")
}

/// Whether `value` may be a label value: at most 63 of `[A-Za-z0-9_.-]`,
/// starting and ending with a letter or digit.
pub(super) fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    bytes.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// One rule of the access the provider needs: an API group, a resource
/// and its verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiAccess {
    /// The API group; "" for the core group.
    pub group: &'static str,
    /// The resource, or resource/subresource.
    pub resource: &'static str,
    /// The verbs, in Kubernetes's words.
    pub verbs: &'static [&'static str],
}

/// Every request the provider makes, as RBAC rules in its namespace. The
/// chart's Role grants exactly these (tests/chart.rs compares), and the
/// test API server refuses any request outside them.
pub const API_ACCESS: &[ApiAccess] = &[
    ApiAccess {
        group: "",
        resource: "pods",
        verbs: &["get", "list", "watch", "create", "delete"],
    },
    // Exec over WebSocket is a GET; API servers from 1.30 on also check
    // "create" for it.
    ApiAccess {
        group: "",
        resource: "pods/exec",
        verbs: &["get", "create"],
    },
    ApiAccess {
        group: "",
        resource: "persistentvolumeclaims",
        verbs: &["get", "list", "create", "delete"],
    },
    ApiAccess {
        group: "",
        resource: "secrets",
        verbs: &["get", "list", "create", "delete"],
    },
    ApiAccess {
        group: "networking.k8s.io",
        resource: "networkpolicies",
        verbs: &["get", "list", "create", "delete"],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_and_distinct() {
        assert_eq!(
            object_name("sbx_0123456789abcdef0123456789abcdef").unwrap(),
            "paddock-sbx-0123456789abcdef0123456789abcdef"
        );
        assert!(object_name("../etc").is_err());
        let a = volume_claim_name("Data_Set.1");
        let b = volume_claim_name("data-set-1");
        assert_ne!(a, b);
        assert!(a.starts_with("paddock-volume-data-set-1-"), "{a}");
        assert!(a.len() <= 63);
        let long = volume_claim_name(&"x".repeat(63));
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn tenants_that_are_not_label_values_stay_out_of_labels() {
        assert!(sandbox_labels("s", "sbx_1", "team-a").contains_key(LABEL_TENANT));
        assert!(!sandbox_labels("s", "sbx_1", "team-").contains_key(LABEL_TENANT));
        assert!(!sandbox_labels("s", "sbx_1", "_team").contains_key(LABEL_TENANT));
    }
}
