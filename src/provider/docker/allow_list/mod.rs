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

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerInspectResponse, NetworkCreateRequest};
use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptions,
};
use tracing::{debug, info, warn};

mod resolver;

use super::egress::{missing_rules, restore_rules, run};
use super::errors::{engine_error, is_not_found};
use super::layout;
use crate::error::{Error, Result};
use crate::provider::{AllowedHost, Ipv4Cidr};

/// The engine network of ALLOW_LIST sandboxes, shared by every Paddock
/// server on the engine.
pub(super) const NETWORK: &str = "paddock-allow";
/// Its Linux bridge on the engine's host.
const BRIDGE: &str = "pdk-allow";
const FORWARD_CHAIN: &str = "PADDOCK-ALLOW";
const INPUT_CHAIN: &str = "PADDOCK-ALLOW-IN";
const DNS_CHAIN: &str = "PADDOCK-ALLOW-DNS";
/// How often the rules are checked and repaired.
pub(super) const KEEP_INTERVAL: Duration = Duration::from_secs(10);
/// How long an upstream DNS server may take to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// The most addresses one sandbox learns through DNS; past it, lookups of
/// new addresses fail (SERVFAIL) rather than grow its rules without bound.
const MAX_LEARNED: usize = 4096;
/// The most DNS queries the resolver works on at once.
const MAX_QUERIES_IN_FLIGHT: usize = 256;

/// Installs what enforces ALLOW_LIST and answers its sandboxes' DNS.
#[derive(Debug)]
pub(super) struct AllowList {
    shared: Arc<Shared>,
    /// Serialises installing the network, the chains and the resolver.
    install: tokio::sync::Mutex<Option<Resolver>>,
}

/// The resolver's socket address on the bridge's gateway, while it runs.
#[derive(Debug, Clone, Copy)]
struct Resolver {
    gateway: Ipv4Addr,
    port: u16,
}

/// What the resolver's tasks share with the provider.
#[derive(Debug)]
struct Shared {
    blocked: Vec<Ipv4Cidr>,
    /// The DNS servers names are resolved with; empty: the host's.
    upstream: Vec<SocketAddr>,
    /// The admitted sandboxes, by their address on [`NETWORK`].
    admitted: Mutex<HashMap<Ipv4Addr, Admitted>>,
    /// Why ALLOW_LIST cannot be enforced, as last found; `None` when it can.
    last_failure: Mutex<Option<String>>,
    queries: Arc<tokio::sync::Semaphore>,
}

/// A sandbox whose rules this server installed.
#[derive(Debug, Clone)]
struct Admitted {
    sandbox_id: String,
    hosts: Vec<AllowedHost>,
    /// Addresses answered to its DNS queries, reachable from then on.
    learned: BTreeSet<Ipv4Addr>,
    resolver: Resolver,
}

impl AllowList {
    pub(super) fn new(blocked: Vec<Ipv4Cidr>, upstream: Vec<SocketAddr>) -> Self {
        Self {
            shared: Arc::new(Shared {
                blocked,
                upstream,
                admitted: Mutex::new(HashMap::new()),
                last_failure: Mutex::new(Some("not checked yet".to_owned())),
                queries: Arc::new(tokio::sync::Semaphore::new(MAX_QUERIES_IN_FLIGHT)),
            }),
            install: tokio::sync::Mutex::new(None),
        }
    }

    /// Why ALLOW_LIST cannot be enforced, as found by the last check; `None`
    /// when it can.
    pub(super) fn failure(&self) -> Option<String> {
        self.shared
            .last_failure
            .lock()
            .expect("allow-list status")
            .clone()
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
        let failure = outcome.as_ref().err().map(|e| e.message().to_owned());
        let mut last = self.shared.last_failure.lock().expect("allow-list status");
        if failure != *last {
            match &failure {
                None => info!("NETWORK_MODE_ALLOW_LIST is enforced"),
                Some(why) => warn!(%why, "NETWORK_MODE_ALLOW_LIST cannot be enforced"),
            }
        }
        *last = failure;
        outcome
    }

    async fn ensure_locked(&self, docker: &Docker, resolver: &mut Option<Resolver>) -> Result<()> {
        let gateway = ensure_network(docker).await?;
        if !std::path::Path::new("/sys/class/net").join(BRIDGE).exists() {
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
        self.ensure(docker).await?;
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
        match network_members(docker).await {
            Ok(live) => prune_rules(&live).await,
            Err(error) => debug!(%error, "cannot list the ALLOW_LIST network's containers"),
        }
    }
}

/// The address on [`NETWORK`], sandbox id and allowed hosts of a running
/// ALLOW_LIST sandbox's container.
fn member(container: &ContainerInspectResponse) -> Option<(Ipv4Addr, String, Vec<String>)> {
    let network_mode = container.host_config.as_ref()?.network_mode.as_deref()?;
    if network_mode != NETWORK {
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

/// Creates the ALLOW_LIST network unless it exists; its gateway address.
async fn ensure_network(docker: &Docker) -> Result<Ipv4Addr> {
    let inspected = match docker
        .inspect_network(NETWORK, None::<InspectNetworkOptions>)
        .await
    {
        Ok(network) => network,
        Err(e) if is_not_found(&e) => {
            create_network(docker).await?;
            docker
                .inspect_network(NETWORK, None::<InspectNetworkOptions>)
                .await
                .map_err(|e| engine_error("inspecting the ALLOW_LIST network", e))?
        }
        Err(e) => return Err(engine_error("inspecting the ALLOW_LIST network", e)),
    };
    inspected
        .ipam
        .and_then(|ipam| ipam.config)
        .unwrap_or_default()
        .iter()
        .filter_map(|config| config.gateway.as_deref()?.parse().ok())
        .next()
        .ok_or_else(|| {
            refusal(format!(
                "the engine's network {NETWORK} has no IPv4 gateway; remove it and Paddock makes \
                 it anew"
            ))
        })
}

async fn create_network(docker: &Docker) -> Result<()> {
    let request = NetworkCreateRequest {
        name: NETWORK.to_owned(),
        driver: Some("bridge".to_owned()),
        options: Some(HashMap::from([
            (
                "com.docker.network.bridge.name".to_owned(),
                BRIDGE.to_owned(),
            ),
            (
                "com.docker.network.bridge.enable_icc".to_owned(),
                "false".to_owned(),
            ),
        ])),
        labels: Some(HashMap::from([(
            layout::LABEL_ROLE.to_owned(),
            layout::ROLE_ALLOW_LIST_NETWORK.to_owned(),
        )])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => {
            info!(
                network = NETWORK,
                bridge = BRIDGE,
                "created the ALLOW_LIST network"
            );
            Ok(())
        }
        // Another server made it meanwhile.
        Err(e) if super::errors::status_code(&e) == Some(409) => Ok(()),
        Err(e) => Err(engine_error("creating the ALLOW_LIST network", e)),
    }
}

/// The addresses held by containers on [`NETWORK`], whoever made them.
async fn network_members(docker: &Docker) -> Result<BTreeSet<Ipv4Addr>> {
    let network = docker
        .inspect_network(NETWORK, None::<InspectNetworkOptions>)
        .await
        .map_err(|e| engine_error("inspecting the ALLOW_LIST network", e))?;
    Ok(network
        .containers
        .unwrap_or_default()
        .values()
        .filter_map(|endpoint| {
            let cidr = endpoint.ipv4_address.as_deref()?;
            cidr.split('/').next()?.parse().ok()
        })
        .collect())
}

fn refusal(why: String) -> Error {
    Error::failed_precondition(format!(
        "network: NETWORK_MODE_ALLOW_LIST cannot be enforced here: {why}; ask for \
         NETWORK_MODE_NONE"
    ))
}

/// A per-sandbox chain's name: `prefix`, '-' and the address in hex (chain
/// names hold at most 28 characters).
fn chain_name(prefix: &str, address: Ipv4Addr) -> String {
    format!("{prefix}-{:08x}", u32::from(address))
}

/// The address a per-sandbox chain of `prefix` is for.
fn chain_address(prefix: &str, chain: &str) -> Option<Ipv4Addr> {
    let hex = chain.strip_prefix(prefix)?.strip_prefix('-')?;
    u32::from_str_radix(hex, 16).ok().map(Ipv4Addr::from)
}

/// The fixed chains and the jumps into them.
async fn install_fixed_rules() -> std::result::Result<(), String> {
    let mut filter = String::new();
    for chain in [FORWARD_CHAIN, INPUT_CHAIN] {
        if run("iptables", &["-w", "10", "-S", chain], None)
            .await
            .is_err()
        {
            filter.push_str(&format!(":{chain} - [0:0]\n"));
            filter.push_str(&format!("-A {chain} -j DROP\n"));
        } else if run("iptables", &["-w", "10", "-C", chain, "-j", "DROP"], None)
            .await
            .is_err()
        {
            filter.push_str(&format!("-A {chain} -j DROP\n"));
        }
    }
    filter.push_str(
        &missing_rules(
            "iptables",
            "filter",
            &[
                ("DOCKER-USER", format!("-i {BRIDGE} -j {FORWARD_CHAIN}")),
                ("INPUT", format!("-i {BRIDGE} -j {INPUT_CHAIN}")),
            ],
        )
        .await,
    );
    let mut nat = String::new();
    if run(
        "iptables",
        &["-t", "nat", "-w", "10", "-S", DNS_CHAIN],
        None,
    )
    .await
    .is_err()
    {
        nat.push_str(&format!(":{DNS_CHAIN} - [0:0]\n"));
    }
    nat.push_str(
        &missing_rules(
            "iptables",
            "nat",
            &[("PREROUTING", format!("-i {BRIDGE} -j {DNS_CHAIN}"))],
        )
        .await,
    );
    let mut restore = String::new();
    if !filter.is_empty() {
        restore.push_str(&format!("*filter\n{filter}COMMIT\n"));
    }
    if !nat.is_empty() {
        restore.push_str(&format!("*nat\n{nat}COMMIT\n"));
    }
    if !restore.is_empty() {
        restore_rules("iptables-restore", &restore).await?;
        info!("installed the ALLOW_LIST firewall rules");
    }
    let drop = format!("-i {BRIDGE} -j DROP");
    let restore6 = missing_rules(
        "ip6tables",
        "filter",
        &[("INPUT", drop.clone()), ("FORWARD", drop)],
    )
    .await;
    if !restore6.is_empty() {
        restore_rules("ip6tables-restore", &format!("*filter\n{restore6}COMMIT\n")).await?;
    }
    Ok(())
}

/// The `iptables-restore` input that replaces the chains of `address` with
/// what `admitted` allows, as one commit per table.
fn sandbox_rules(address: Ipv4Addr, admitted: &Admitted, missing_jumps: (&str, &str)) -> String {
    let forward = chain_name("PDK-AF", address);
    let input = chain_name("PDK-AI", address);
    let dns = chain_name("PDK-AD", address);
    let Resolver { gateway, port } = admitted.resolver;
    let mut filter = format!(":{forward} - [0:0]\n");
    for host in &admitted.hosts {
        if let AllowedHost::Range(range) = host {
            filter.push_str(&format!("-A {forward} -d {range} -j ACCEPT\n"));
        }
    }
    for learned in &admitted.learned {
        filter.push_str(&format!("-A {forward} -d {learned}/32 -j ACCEPT\n"));
    }
    filter.push_str(&format!(":{input} - [0:0]\n"));
    let mut nat = format!(":{dns} - [0:0]\n");
    for protocol in ["udp", "tcp"] {
        filter.push_str(&format!(
            "-A {input} -d {gateway}/32 -p {protocol} -m {protocol} --dport {port} -j ACCEPT\n"
        ));
        nat.push_str(&format!(
            "-A {dns} -p {protocol} -m {protocol} --dport 53 -j DNAT --to-destination \
             {gateway}:{port}\n"
        ));
    }
    let (filter_jumps, nat_jumps) = missing_jumps;
    format!("*filter\n{filter}{filter_jumps}COMMIT\n*nat\n{nat}{nat_jumps}COMMIT\n")
}

/// Installs the chains of `address` and the jumps to them.
async fn install_sandbox_rules(
    address: Ipv4Addr,
    admitted: &Admitted,
) -> std::result::Result<(), String> {
    let source = format!("-s {address}/32 -j");
    let forward = chain_name("PDK-AF", address);
    let input = chain_name("PDK-AI", address);
    let dns = chain_name("PDK-AD", address);
    // A jump to a chain that does not exist yet cannot be checked: check
    // after the chains exist, which the first commit makes sure of.
    let first = sandbox_rules(address, admitted, ("", ""));
    restore_rules("iptables-restore", &first).await?;
    let filter_jumps = missing_rules(
        "iptables",
        "filter",
        &[
            (FORWARD_CHAIN, format!("{source} {forward}")),
            (INPUT_CHAIN, format!("{source} {input}")),
        ],
    )
    .await;
    let nat_jumps =
        missing_rules("iptables", "nat", &[(DNS_CHAIN, format!("{source} {dns}"))]).await;
    if !filter_jumps.is_empty() || !nat_jumps.is_empty() {
        let mut restore = String::new();
        if !filter_jumps.is_empty() {
            restore.push_str(&format!("*filter\n{filter_jumps}COMMIT\n"));
        }
        if !nat_jumps.is_empty() {
            restore.push_str(&format!("*nat\n{nat_jumps}COMMIT\n"));
        }
        restore_rules("iptables-restore", &restore).await?;
    }
    Ok(())
}

/// Removes the jumps to the chains of `address` and the chains, as far as
/// they exist; what is left behind is removed by a later [`prune_rules`].
async fn remove_sandbox_rules(address: Ipv4Addr) {
    let source = format!("{address}/32");
    for (table, fixed, prefix) in [
        ("filter", FORWARD_CHAIN, "PDK-AF"),
        ("filter", INPUT_CHAIN, "PDK-AI"),
        ("nat", DNS_CHAIN, "PDK-AD"),
    ] {
        let chain = chain_name(prefix, address);
        let w = ["-t", table, "-w", "10"];
        let unjump = [&w[..], &["-D", fixed, "-s", &source, "-j", &chain]].concat();
        // The same jump may be there twice (servers racing after a flush).
        while run("iptables", &unjump, None).await.is_ok() {}
        let _ = run("iptables", &[&w[..], &["-F", &chain]].concat(), None).await;
        let _ = run("iptables", &[&w[..], &["-X", &chain]].concat(), None).await;
    }
}

/// Removes the rules of every address no container on the network holds.
async fn prune_rules(live: &BTreeSet<Ipv4Addr>) {
    let mut stale = BTreeSet::new();
    for (table, prefix) in [
        ("filter", "PDK-AF"),
        ("filter", "PDK-AI"),
        ("nat", "PDK-AD"),
    ] {
        let Ok(listing) = run("iptables", &["-t", table, "-w", "10", "-S"], None).await else {
            continue;
        };
        for line in listing.lines() {
            if let Some(address) = line
                .strip_prefix("-N ")
                .and_then(|chain| chain_address(prefix, chain))
                && !live.contains(&address)
            {
                stale.insert(address);
            }
        }
    }
    for address in stale {
        debug!(%address, "removing the rules of an address no ALLOW_LIST sandbox holds");
        remove_sandbox_rules(address).await;
    }
}

impl super::DockerProvider {
    /// Admits the just started container `name` when it is an ALLOW_LIST
    /// sandbox (see [`AllowList::admit`]).
    pub(super) async fn admit_to_allow_list(&self, name: &str) -> Result<()> {
        let container = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| engine_error("inspecting a started sandbox container", e))?;
        self.allow_list.admit(&self.docker, &container).await
    }

    /// Keeps the ALLOW_LIST rules (see [`AllowList::keep`]) for this
    /// server's running ALLOW_LIST sandboxes.
    pub(super) async fn keep_allow_list(&self) {
        let listed = self
            .docker
            .list_containers(Some(ListContainersOptions {
                filters: Some(HashMap::from([
                    (
                        "label".to_owned(),
                        vec![format!("{}={}", layout::LABEL_SCOPE, self.settings.scope)],
                    ),
                    ("network".to_owned(), vec![NETWORK.to_owned()]),
                ])),
                ..Default::default()
            }))
            .await;
        let mut running = Vec::new();
        for summary in listed.unwrap_or_default() {
            let address = summary
                .network_settings
                .as_ref()
                .and_then(|settings| settings.networks.as_ref()?.get(NETWORK)?.ip_address.clone())
                .and_then(|address| address.parse::<Ipv4Addr>().ok());
            if address.is_some_and(|address| self.allow_list.is_admitted(address)) {
                continue;
            }
            let Some(id) = summary.id else { continue };
            if let Ok(container) = self
                .docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                && container.state.as_ref().and_then(|s| s.running) == Some(true)
            {
                running.push(container);
            }
        }
        self.allow_list.keep(&self.docker, &running).await;
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn admitted(hosts: &[&str]) -> Admitted {
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

    #[test]
    fn a_sandbox_reaches_its_ranges_and_learned_addresses_and_dns_goes_to_the_resolver() {
        let rules = sandbox_rules(
            "172.30.0.2".parse().unwrap(),
            &admitted(&["example.com", "203.0.113.0/24"]),
            ("", ""),
        );
        assert_eq!(
            rules,
            "*filter\n\
             :PDK-AF-ac1e0002 - [0:0]\n\
             -A PDK-AF-ac1e0002 -d 203.0.113.0/24 -j ACCEPT\n\
             -A PDK-AF-ac1e0002 -d 198.51.100.9/32 -j ACCEPT\n\
             :PDK-AI-ac1e0002 - [0:0]\n\
             -A PDK-AI-ac1e0002 -d 172.30.0.1/32 -p udp -m udp --dport 40000 -j ACCEPT\n\
             -A PDK-AI-ac1e0002 -d 172.30.0.1/32 -p tcp -m tcp --dport 40000 -j ACCEPT\n\
             COMMIT\n\
             *nat\n\
             :PDK-AD-ac1e0002 - [0:0]\n\
             -A PDK-AD-ac1e0002 -p udp -m udp --dport 53 -j DNAT --to-destination 172.30.0.1:40000\n\
             -A PDK-AD-ac1e0002 -p tcp -m tcp --dport 53 -j DNAT --to-destination 172.30.0.1:40000\n\
             COMMIT\n"
        );
    }

    #[test]
    fn chain_names_carry_their_address() {
        let address: Ipv4Addr = "10.1.2.3".parse().unwrap();
        let chain = chain_name("PDK-AF", address);
        assert!(chain.len() <= 28, "{chain}");
        assert_eq!(chain_address("PDK-AF", &chain), Some(address));
        assert_eq!(chain_address("PDK-AD", &chain), None);
        assert_eq!(chain_address("PDK-AF", FORWARD_CHAIN), None);
    }

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
