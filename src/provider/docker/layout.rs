//! Where things are inside a sandbox container, the names and labels of
//! Paddock's objects on the engine.

use std::collections::HashMap;

pub(super) use crate::provider::layout::{
    AGENT_BINARY, AGENT_DIR, AGENT_SOCKET, AGENT_SOCKET_NAME, KEPT_CAPABILITIES, LABEL_ROLE,
    LABEL_SANDBOX_ID, LABEL_SCOPE, LABEL_TENANT, ROLE_SANDBOX, STATE_DIR,
};

pub(super) const LABEL_AGENT_SHA256: &str = "io.paddock.agent-sha256";
/// The allowed hosts of an ALLOW_LIST sandbox, comma-separated.
pub(super) const LABEL_ALLOWED_HOSTS: &str = "io.paddock.allowed-hosts";

pub(super) const ROLE_AGENT_CHECK: &str = "agent-check";
/// The network of EGRESS sandboxes, shared by every server on the engine.
pub(super) const ROLE_EGRESS_NETWORK: &str = "egress-network";
/// The network of ALLOW_LIST sandboxes, shared by every server on the engine.
pub(super) const ROLE_ALLOW_LIST_NETWORK: &str = "allow-list-network";

/// The labels every object of `role` carries.
pub(super) fn labels_of(scope: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_SCOPE.to_owned(), scope.to_owned()),
        (LABEL_ROLE.to_owned(), role.to_owned()),
    ])
}
