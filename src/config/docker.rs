//! How the Docker provider uses its engine, as resolved.

use std::path::PathBuf;
use std::time::Duration;

/// How to use a Docker engine.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// The engine's address; `None` means `DOCKER_HOST` or the default socket.
    pub host: Option<String>,
    /// TLS files for a TCP engine.
    pub tls_dir: Option<PathBuf>,
    /// The image of sandboxes whose request names none.
    pub default_image: Option<String>,
    /// The longest an image pull may take.
    pub pull_timeout: Duration,
    /// The static agent binary.
    pub agent_binary: PathBuf,
    /// How to reach agents.
    pub transport: crate::provider::AgentTransport,
    /// The ranges EGRESS and ALLOW_LIST sandboxes may not reach.
    pub egress_blocked: Vec<crate::sandbox::network::Ipv4Cidr>,
    /// The DNS servers of ALLOW_LIST sandboxes' names; empty: the host's.
    pub allow_list_dns: Vec<std::net::SocketAddr>,
    /// The default runtime; `None`: the engine's.
    pub runtime: Option<String>,
    /// The other runtimes requests may name.
    pub runtimes: Vec<String>,
}
