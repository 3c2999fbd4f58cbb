//! What every provider's sandboxes share: where the agent and its state are
//! inside a sandbox, and the labels that mark a provider's objects as
//! Paddock's (containers on an engine, pods and their objects in a
//! namespace), so reconciliation finds them the same way everywhere.

pub(crate) const AGENT_DIR: &str = "/.paddock/bin";
pub(crate) const AGENT_BINARY: &str = "/.paddock/bin/paddock";
pub(crate) const STATE_DIR: &str = "/.paddock/state";
pub(crate) const AGENT_SOCKET: &str = "/.paddock/state/agent.sock";
/// The socket's name in the state directory.
pub(crate) const AGENT_SOCKET_NAME: &str = "agent.sock";

/// The identity of the store whose server made the object.
pub(crate) const LABEL_SCOPE: &str = "io.paddock.scope";
/// What the object is for, such as [`ROLE_SANDBOX`].
pub(crate) const LABEL_ROLE: &str = "io.paddock.role";
pub(crate) const LABEL_SANDBOX_ID: &str = "io.paddock.sandbox-id";
pub(crate) const LABEL_TENANT: &str = "io.paddock.tenant";

pub(crate) const ROLE_SANDBOX: &str = "sandbox";
