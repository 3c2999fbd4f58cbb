//! What every provider's sandboxes share: where the agent and its state are
//! inside a sandbox, and the labels that mark a provider's objects as
//! Paddock's (containers on an engine, pods and their objects in a
//! namespace), so reconciliation finds them the same way everywhere; and the
//! capabilities a sandbox's root keeps, wherever it runs.

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

/// The capabilities a sandbox keeps; every other is dropped. Enough for a
/// root shell to own, read and write its files, switch users and signal its
/// processes, and for a server to bind a port below 1024; not enough to make
/// device nodes, use raw sockets, chroot, load modules or change the
/// firewall. `ping` still works: the engine opens unprivileged ICMP sockets.
pub(crate) const KEPT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETGID",
    "SETUID",
];
