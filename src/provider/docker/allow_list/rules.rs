//! The firewall rules of ALLOW_LIST: the fixed chains every server shares,
//! and each admitted sandbox's chains, keyed by its address.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use tracing::info;

use super::state::{Admitted, BRIDGE, Resolver};
use crate::provider::docker::egress::{drop_ipv6_from, missing_rules, restore_rules, run};
use crate::sandbox::network::AllowedHost;

pub(super) const FORWARD_CHAIN: &str = "PADDOCK-ALLOW";
const INPUT_CHAIN: &str = "PADDOCK-ALLOW-IN";
const DNS_CHAIN: &str = "PADDOCK-ALLOW-DNS";

/// A per-sandbox chain's name: `prefix`, '-' and the address in hex (chain
/// names hold at most 28 characters).
pub(super) fn chain_name(prefix: &str, address: Ipv4Addr) -> String {
    format!("{prefix}-{:08x}", u32::from(address))
}

/// The address a per-sandbox chain of `prefix` is for.
fn chain_address(prefix: &str, chain: &str) -> Option<Ipv4Addr> {
    let hex = chain.strip_prefix(prefix)?.strip_prefix('-')?;
    u32::from_str_radix(hex, 16).ok().map(Ipv4Addr::from)
}

/// The fixed chains and the jumps into them.
pub(super) async fn install_fixed_rules() -> std::result::Result<(), String> {
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
    drop_ipv6_from(BRIDGE).await
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
pub(super) async fn install_sandbox_rules(
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
/// they exist; what is left behind goes when a later check finds no
/// container on the address.
pub(super) async fn remove_sandbox_rules(address: Ipv4Addr) {
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

/// The addresses that have chains of their own, in any table.
pub(super) async fn addresses_with_rules() -> BTreeSet<Ipv4Addr> {
    let mut addresses = BTreeSet::new();
    for (table, prefix) in [
        ("filter", "PDK-AF"),
        ("filter", "PDK-AI"),
        ("nat", "PDK-AD"),
    ] {
        let Ok(listing) = run("iptables", &["-t", table, "-w", "10", "-S"], None).await else {
            continue;
        };
        addresses.extend(
            listing
                .lines()
                .filter_map(|line| chain_address(prefix, line.strip_prefix("-N ")?)),
        );
    }
    addresses
}

#[cfg(test)]
mod tests {
    use super::super::state::tests::admitted;
    use super::*;

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
}
