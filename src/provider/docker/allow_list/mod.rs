//! NETWORK_MODE_ALLOW_LIST on Docker: only the hosts a sandbox names, by
//! IPv4 range or by DNS name, with DNS answered by this server.
//!
//! Every ALLOW_LIST sandbox joins one engine network, [`NETWORK`] (Linux
//! bridge [`BRIDGE`], inter-container traffic off). Everything from that
//! bridge is dropped unless a rule of the sandbox's own source address lets
//! it through, so a sandbox whose rules are not installed yet, or were
//! removed, reaches nothing. Paddock's rules, in the host's firewall:
//!
//! ```text
//! filter DOCKER-USER  -i pdk-allow -j PADDOCK-ALLOW
//!   PADDOCK-ALLOW     -s <sandbox> -j PDK-AF-<sandbox>  ...then DROP
//!   PDK-AF-<sandbox>  -d <allowed range or learned address> -j ACCEPT ...
//! filter INPUT        -i pdk-allow -j PADDOCK-ALLOW-IN
//!   PADDOCK-ALLOW-IN  -s <sandbox> -j PDK-AI-<sandbox>  ...then DROP
//!   PDK-AI-<sandbox>  -d <gateway> --dport <resolver port> -j ACCEPT (udp, tcp)
//! nat PREROUTING      -i pdk-allow -j PADDOCK-ALLOW-DNS
//!   PADDOCK-ALLOW-DNS -s <sandbox> -j PDK-AD-<sandbox>
//!   PDK-AD-<sandbox>  --dport 53 -j DNAT --to <gateway>:<resolver port> (udp, tcp)
//! ip6tables INPUT and FORWARD -i pdk-allow -j DROP
//! ```
//!
//! Every DNS query a sandbox sends, to whatever server (the engine's
//! embedded resolver forwards from the sandbox's own address), reaches the
//! resolver of the server that started the sandbox, on the bridge's gateway.
//! It answers allowed names only, with their IPv4 addresses outside the
//! blocked ranges, and adds each address it answers with to the sandbox's
//! chain before the answer leaves, so the connection that follows the lookup
//! goes through.
//!
//! A sandbox's rules are installed when its container starts, before its
//! start returns and so before any command of the caller runs in it, and
//! removed before it stops. Every [`KEEP_INTERVAL`] the server puts back
//! what a firewall reload removed, admits its running ALLOW_LIST sandboxes
//! it has not admitted yet (after a restart), and removes the rules of
//! addresses no container holds any more.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use tracing::{debug, info, warn};

mod network;
mod resolver;
mod rules;
mod state;

pub(super) use state::NETWORK;

use super::egress::missing_rules;
use super::layout;
use super::rules_status::RulesStatus;
use crate::error::{Error, Result};
use crate::sandbox::network::{AllowedHost, Ipv4Cidr};
use network::{THE_NETWORK, ensure_network, network_members};
use rules::{
    FORWARD_CHAIN, addresses_with_rules, chain_name, install_fixed_rules, install_sandbox_rules,
    remove_sandbox_rules,
};
use state::{Admitted, BRIDGE, Resolver, Shared, refusal};

/// How often the rules are checked and repaired.
pub(super) const KEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Installs what enforces ALLOW_LIST and answers its sandboxes' DNS.
#[derive(Debug)]
pub(super) struct AllowList {
    shared: Arc<Shared>,
    status: RulesStatus,
    /// Serialises installing the network, the chains and the resolver.
    install: tokio::sync::Mutex<Option<Resolver>>,
}

impl AllowList {
    pub(super) fn new(blocked: Vec<Ipv4Cidr>, upstream: Vec<SocketAddr>) -> Self {
        Self {
            shared: Arc::new(Shared::new(blocked, upstream)),
            status: RulesStatus::new("NETWORK_MODE_ALLOW_LIST"),
            install: tokio::sync::Mutex::new(None),
        }
    }

    /// Why ALLOW_LIST cannot be enforced, as found by the last check; `None`
    /// when it can.
    pub(super) fn failure(&self) -> Option<String> {
        self.status.failure()
    }

    /// Refuses `hosts` (canonical entries of a request) that name a range
    /// overlapping a blocked one: INVALID_ARGUMENT.
    pub(super) fn check_hosts(&self, hosts: &[String]) -> Result<Vec<AllowedHost>> {
        let mut parsed = Vec::with_capacity(hosts.len());
        for host in hosts {
            let host: AllowedHost = host
                .parse()
                .map_err(|why: String| Error::invalid_argument("allowed_hosts", why))?;
            if let Some(blocked) = self.shared.blocked.iter().find(|b| host.overlaps(b)) {
                return Err(Error::invalid_argument(
                    "allowed_hosts",
                    format!(
                        "{host} overlaps {blocked}, a range this server never lets sandboxes \
                         reach (its --egress-blocked-ranges)"
                    ),
                ));
            }
            parsed.push(host);
        }
        Ok(parsed)
    }

    /// Makes sure the network, the fixed rules and the resolver are in
    /// place. FAILED_PRECONDITION, saying why, when they cannot be.
    pub(super) async fn ensure(&self, docker: &Docker) -> Result<()> {
        let mut resolver = self.install.lock().await;
        let outcome = self.ensure_locked(docker, &mut resolver).await;
        self.status.record(outcome)
    }

    /// [`AllowList::ensure`], unless a check no older than `max_age` found
    /// everything in place (see [`super::egress::Egress::ensure_within`]).
    pub(super) async fn ensure_within(&self, docker: &Docker, max_age: Duration) -> Result<()> {
        if self.status.enforced_within(max_age) {
            return Ok(());
        }
        self.ensure(docker).await
    }

    async fn ensure_locked(&self, docker: &Docker, resolver: &mut Option<Resolver>) -> Result<()> {
        let gateway = ensure_network(docker).await?;
        if !THE_NETWORK.bridge_is_here() {
            return Err(refusal(format!(
                "the engine's bridge {BRIDGE} is not in this server's network namespace (a remote \
                 engine, or a server in a container of its own), so Paddock can neither install \
                 its firewall rules nor answer its sandboxes' DNS"
            )));
        }
        install_fixed_rules().await.map_err(refusal)?;
        match *resolver {
            Some(running) if running.gateway == gateway => {}
            _ => {
                let port = resolver::start(Arc::downgrade(&self.shared), gateway)
                    .await
                    .map_err(refusal)?;
                info!(%gateway, port, "ALLOW_LIST DNS resolver listening");
                *resolver = Some(Resolver { gateway, port });
            }
        }
        Ok(())
    }

    /// Admits the started container `container` when it is an ALLOW_LIST
    /// sandbox: installs the rules of its address (replacing whatever an
    /// earlier holder of that address left). Does nothing for a container
    /// of another network.
    pub(super) async fn admit(
        &self,
        docker: &Docker,
        container: &ContainerInspectResponse,
    ) -> Result<()> {
        let Some((address, sandbox_id, hosts)) = member(container) else {
            return Ok(());
        };
        self.ensure_within(docker, KEEP_INTERVAL).await?;
        let hosts = self.check_hosts(&hosts)?;
        let resolver = self.install.lock().await.ok_or_else(|| {
            Error::unavailable("the ALLOW_LIST DNS resolver is not running; try again")
        })?;
        let admitted = Admitted {
            sandbox_id,
            hosts,
            learned: BTreeSet::new(),
            resolver,
        };
        install_sandbox_rules(address, &admitted)
            .await
            .map_err(refusal)?;
        debug!(%address, sandbox_id = admitted.sandbox_id, "admitted an ALLOW_LIST sandbox");
        self.shared
            .admitted
            .lock()
            .expect("admitted sandboxes")
            .insert(address, admitted);
        Ok(())
    }

    /// Whether this server admitted the sandbox at `address`.
    pub(super) fn is_admitted(&self, address: Ipv4Addr) -> bool {
        self.shared
            .admitted
            .lock()
            .expect("admitted sandboxes")
            .contains_key(&address)
    }

    /// Removes the rules of `sandbox_id`, if this server admitted it, before
    /// its container stops: from then on it reaches nothing.
    pub(super) async fn release(&self, sandbox_id: &str) {
        let address = {
            let mut admitted = self.shared.admitted.lock().expect("admitted sandboxes");
            let address = admitted
                .iter()
                .find(|(_, entry)| entry.sandbox_id == sandbox_id)
                .map(|(address, _)| *address);
            if let Some(address) = address {
                admitted.remove(&address);
            }
            address
        };
        if let Some(address) = address {
            remove_sandbox_rules(address).await;
        }
    }

    /// Puts back what is missing, admits `running` (this server's running
    /// ALLOW_LIST containers) when not admitted yet, and removes the rules of
    /// addresses that no container on the network holds any more.
    pub(super) async fn keep(&self, docker: &Docker, running: &[ContainerInspectResponse]) {
        let admitted = self
            .shared
            .admitted
            .lock()
            .expect("admitted sandboxes")
            .clone();
        // Nothing of this server's to keep; what others left is theirs to
        // prune, and harmless meanwhile (an address without rules reaches
        // nothing, and a sandbox's start replaces its address's rules).
        if admitted.is_empty() && running.is_empty() {
            return;
        }
        if self.ensure(docker).await.is_err() {
            return;
        }
        for (address, entry) in &admitted {
            let chain = chain_name("PDK-AF", *address);
            let dispatch = format!("-s {address}/32 -j {chain}");
            if !missing_rules("iptables", "filter", &[(FORWARD_CHAIN, dispatch)])
                .await
                .is_empty()
            {
                warn!(%address, "the rules of an ALLOW_LIST sandbox were gone; installing them again");
                if let Err(why) = install_sandbox_rules(*address, entry).await {
                    warn!(%address, %why, "cannot install the rules of an ALLOW_LIST sandbox");
                }
            }
        }
        for container in running {
            let known =
                member(container).is_some_and(|(address, _, _)| admitted.contains_key(&address));
            if !known && let Err(error) = self.admit(docker, container).await {
                warn!(%error, "cannot admit a running ALLOW_LIST sandbox");
            }
        }
        // Rules listed before the network's members: a sandbox that takes
        // an address after the members were listed made its rules after the
        // first listing too, so they are not taken for stale.
        let with_rules = addresses_with_rules().await;
        match network_members(docker).await {
            Ok(live) => {
                for address in with_rules.difference(&live) {
                    debug!(%address, "removing the rules of an address no ALLOW_LIST sandbox holds");
                    remove_sandbox_rules(*address).await;
                }
            }
            Err(error) => debug!(%error, "cannot list the ALLOW_LIST network's containers"),
        }
    }
}

/// Whether `container` is made to join [`NETWORK`] (an ALLOW_LIST
/// sandbox's), started or not.
pub(super) fn joins(container: &ContainerInspectResponse) -> bool {
    container
        .host_config
        .as_ref()
        .and_then(|host| host.network_mode.as_deref())
        == Some(NETWORK)
}

/// The address on [`NETWORK`], sandbox id and allowed hosts of a running
/// ALLOW_LIST sandbox's container.
fn member(container: &ContainerInspectResponse) -> Option<(Ipv4Addr, String, Vec<String>)> {
    if !joins(container) {
        return None;
    }
    let address = container
        .network_settings
        .as_ref()?
        .networks
        .as_ref()?
        .get(NETWORK)?
        .ip_address
        .as_deref()?
        .parse()
        .ok()?;
    let labels = container.config.as_ref()?.labels.as_ref()?;
    let sandbox_id = labels.get(layout::LABEL_SANDBOX_ID)?.clone();
    let hosts = hosts_from_label(labels.get(layout::LABEL_ALLOWED_HOSTS).map(String::as_str));
    Some((address, sandbox_id, hosts))
}

/// The label value that carries a sandbox's allowed hosts on its container.
pub(super) fn hosts_label(hosts: &[String]) -> String {
    hosts.join(",")
}

fn hosts_from_label(label: Option<&str>) -> Vec<String> {
    label
        .unwrap_or_default()
        .split(',')
        .filter(|host| !host.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_go_through_the_container_label_unchanged() {
        let hosts = vec!["pypi.org".to_owned(), "*.pythonhosted.org".to_owned()];
        assert_eq!(hosts_from_label(Some(&hosts_label(&hosts))), hosts);
        assert!(hosts_from_label(Some("")).is_empty());
        assert!(hosts_from_label(None).is_empty());
    }

    #[test]
    fn ranges_that_overlap_a_blocked_one_are_refused() {
        let list = AllowList::new(Ipv4Cidr::default_egress_blocked(), Vec::new());
        assert!(
            list.check_hosts(&["8.8.8.0/24".into(), "pypi.org".into()])
                .is_ok()
        );
        for host in ["10.1.0.0/16", "0.0.0.0/0", "169.254.169.254"] {
            let error = list.check_hosts(&[host.into()]).unwrap_err();
            assert!(
                error.message().contains("never lets sandboxes reach"),
                "{error}"
            );
        }
    }
}
