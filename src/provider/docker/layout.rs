//! Where things are inside a sandbox container, the names and labels of
//! Paddock's objects on the engine.

use std::collections::HashMap;

pub(super) const AGENT_DIR: &str = "/.paddock/bin";
pub(super) const AGENT_BINARY: &str = "/.paddock/bin/paddock";
pub(super) const STATE_DIR: &str = "/.paddock/state";
pub(super) const AGENT_SOCKET: &str = "/.paddock/state/agent.sock";
/// The socket's name in the state directory.
pub(super) const AGENT_SOCKET_NAME: &str = "agent.sock";

/// The identity of the store whose server made the object.
pub(super) const LABEL_SCOPE: &str = "io.paddock.scope";
/// What the object is for: [`ROLE_SANDBOX`], [`ROLE_AGENT_CHECK`],
/// [`ROLE_EGRESS_NETWORK`] or [`ROLE_ALLOW_LIST_NETWORK`].
pub(super) const LABEL_ROLE: &str = "io.paddock.role";
pub(super) const LABEL_SANDBOX_ID: &str = "io.paddock.sandbox-id";
pub(super) const LABEL_TENANT: &str = "io.paddock.tenant";
pub(super) const LABEL_AGENT_SHA256: &str = "io.paddock.agent-sha256";
/// The allowed hosts of an ALLOW_LIST sandbox, comma-separated.
pub(super) const LABEL_ALLOWED_HOSTS: &str = "io.paddock.allowed-hosts";

pub(super) const ROLE_SANDBOX: &str = "sandbox";
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
