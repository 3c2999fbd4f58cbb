//! What the parts of ALLOW_LIST share: the engine network's names, the
//! sandboxes this server admitted, and the resolver's settings.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Error;
use crate::sandbox::network::{AllowedHost, Ipv4Cidr};

/// The engine network of ALLOW_LIST sandboxes, shared by every Paddock
/// server on the engine.
pub(crate) const NETWORK: &str = "paddock-allow";
/// Its Linux bridge on the engine's host.
pub(super) const BRIDGE: &str = "pdk-allow";
/// How long an upstream DNS server may take to answer.
pub(super) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// The most addresses one sandbox learns through DNS; past it, lookups of
/// new addresses fail (SERVFAIL) rather than grow its rules without bound.
pub(super) const MAX_LEARNED: usize = 4096;
/// The most DNS queries the resolver works on at once.
const MAX_QUERIES_IN_FLIGHT: usize = 256;

/// The resolver's socket address on the bridge's gateway, while it runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Resolver {
    pub(super) gateway: Ipv4Addr,
    pub(super) port: u16,
}

/// What the resolver's tasks share with the provider.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) blocked: Vec<Ipv4Cidr>,
    /// The DNS servers names are resolved with; empty: the host's.
    pub(super) upstream: Vec<SocketAddr>,
    /// The admitted sandboxes, by their address on [`NETWORK`].
    pub(super) admitted: Mutex<HashMap<Ipv4Addr, Admitted>>,
    pub(super) queries: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    pub(super) fn new(blocked: Vec<Ipv4Cidr>, upstream: Vec<SocketAddr>) -> Self {
        Self {
            blocked,
            upstream,
            admitted: Mutex::new(HashMap::new()),
            queries: Arc::new(tokio::sync::Semaphore::new(MAX_QUERIES_IN_FLIGHT)),
        }
    }
}

/// A sandbox whose rules this server installed.
#[derive(Debug, Clone)]
pub(super) struct Admitted {
    pub(super) sandbox_id: String,
    pub(super) hosts: Vec<AllowedHost>,
    /// Addresses answered to its DNS queries, reachable from then on.
    pub(super) learned: BTreeSet<Ipv4Addr>,
    pub(super) resolver: Resolver,
}

/// ALLOW_LIST cannot be enforced, because of `why`: FAILED_PRECONDITION.
pub(super) fn refusal(why: String) -> Error {
    Error::failed_precondition(format!(
        "network: NETWORK_MODE_ALLOW_LIST cannot be enforced here: {why}; ask for \
         NETWORK_MODE_NONE"
    ))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A sandbox allowed `hosts`, having learned one address.
    pub(crate) fn admitted(hosts: &[&str]) -> Admitted {
        Admitted {
            sandbox_id: "sbx_0".into(),
            hosts: hosts.iter().map(|h| h.parse().unwrap()).collect(),
            learned: BTreeSet::from(["198.51.100.9".parse().unwrap()]),
            resolver: Resolver {
                gateway: "172.30.0.1".parse().unwrap(),
                port: 40000,
            },
        }
    }
}
