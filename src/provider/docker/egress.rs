//! NETWORK_MODE_EGRESS on Docker: the internet, but no other sandbox, the
//! host or a blocked range.
//!
//! Every EGRESS sandbox joins one engine network, [`NETWORK`], whose Linux
//! bridge is [`BRIDGE`]. The network has inter-container traffic off, so
//! sandboxes on it cannot reach one another (Docker drops bridged traffic
//! between its ports), and Docker's own isolation rules keep it apart from
//! every other engine network. Paddock adds what Docker leaves open, in the
//! host's `filter` table:
//!
//! ```text
//! INPUT        -i pdk-egress -j DROP              the host and this server, on any address
//! DOCKER-USER  -i pdk-egress -j PADDOCK-EGRESS    forwarded traffic from sandboxes
//! PADDOCK-EGRESS                                  DNS to the host's resolvers, then DROP
//!                                                 to each blocked range
//! ip6tables INPUT and FORWARD -i pdk-egress -j DROP
//! ```
//!
//! The rules only work where the engine's bridges are in this server's own
//! network namespace (the engine is local) and the server may change the
//! firewall (root or CAP_NET_ADMIN). Otherwise [`Egress::ensure`] fails, and
//! so does every EGRESS create: a sandbox never runs open because the rules
//! could not be installed. The rules are checked every ten seconds, and
//! before an EGRESS create when the last check is older or failed, and
//! installed again when something removed them.

use std::time::Duration;

use bollard::Docker;
use tokio::process::Command;
use tracing::info;

use super::errors::{engine_error, is_not_found};
use super::layout;
use super::networks::IsolatedNetwork;
use super::rules_status::RulesStatus;
use crate::error::{Error, Result};
use crate::sandbox::network::Ipv4Cidr;

/// The engine network of EGRESS sandboxes, shared by every Paddock server on
/// the engine (they must agree on the blocked ranges).
pub(super) const NETWORK: &str = "paddock-egress";
/// Its Linux bridge on the engine's host.
const BRIDGE: &str = "pdk-egress";
const THE_NETWORK: IsolatedNetwork = IsolatedNetwork {
    name: NETWORK,
    bridge: BRIDGE,
    role: layout::ROLE_EGRESS_NETWORK,
    mode: "EGRESS",
};
/// The chain Paddock owns in the `filter` table.
const CHAIN: &str = "PADDOCK-EGRESS";
/// Where the host lists its DNS resolvers.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Installs and checks what enforces EGRESS.
#[derive(Debug)]
pub(super) struct Egress {
    blocked: Vec<Ipv4Cidr>,
    status: RulesStatus,
    /// Serialises checks and installs.
    install: tokio::sync::Mutex<()>,
}

impl Egress {
    pub(super) fn new(blocked: Vec<Ipv4Cidr>) -> Self {
        Self {
            blocked,
            status: RulesStatus::new("NETWORK_MODE_EGRESS"),
            install: tokio::sync::Mutex::new(()),
        }
    }

    /// Why EGRESS cannot be enforced, as found by the last check; `None`
    /// when it can.
    pub(super) fn failure(&self) -> Option<String> {
        self.status.failure()
    }

    /// Makes sure the network exists and the rules are in place, installing
    /// what is missing. FAILED_PRECONDITION, saying why, when they cannot be.
    pub(super) async fn ensure(&self, docker: &Docker) -> Result<()> {
        let _one_at_a_time = self.install.lock().await;
        self.status.record(self.ensure_locked(docker).await)
    }

    /// [`Egress::ensure`], unless a check no older than `max_age` found the
    /// rules in place: the periodic check repairs the rules for every
    /// sandbox within that time anyway, and a create need not pay for
    /// another (a dozen firewall and engine calls).
    pub(super) async fn ensure_within(&self, docker: &Docker, max_age: Duration) -> Result<()> {
        if self.status.enforced_within(max_age) {
            return Ok(());
        }
        self.ensure(docker).await
    }

    async fn ensure_locked(&self, docker: &Docker) -> Result<()> {
        ensure_network(docker).await?;
        if !THE_NETWORK.bridge_is_here() {
            return Err(refusal(format!(
                "the engine's bridge {BRIDGE} is not in this server's network namespace (a remote \
                 engine, or a server in a container of its own), so Paddock cannot install the \
                 firewall rules that keep sandboxes off the host and each other"
            )));
        }
        let resolvers = host_resolvers().await;
        let wanted = chain_rules(&self.blocked, &resolvers);
        let mut restore = String::new();
        if iptables(&["-w", "10", "-S", CHAIN]).await.ok() != Some(wanted.join("\n") + "\n") {
            // Declaring the chain flushes it; the new rules replace the old in
            // one commit, so there is no moment with the chain empty.
            restore.push_str(&format!(":{CHAIN} - [0:0]\n"));
            for rule in wanted.iter().skip(1) {
                restore.push_str(rule);
                restore.push('\n');
            }
        }
        restore.push_str(
            &missing_rules(
                "iptables",
                "filter",
                &[
                    ("DOCKER-USER", format!("-i {BRIDGE} -j {CHAIN}")),
                    ("INPUT", format!("-i {BRIDGE} -j DROP")),
                ],
            )
            .await,
        );
        if !restore.is_empty() {
            restore_rules("iptables-restore", &format!("*filter\n{restore}COMMIT\n"))
                .await
                .map_err(refusal)?;
            info!(chain = CHAIN, "installed the EGRESS firewall rules");
        }
        drop_ipv6_from(BRIDGE).await.map_err(refusal)
    }
}

/// The `iptables-restore` lines that insert, at the top of their chain, each
/// of `rules` (chain, rule) that `program` (iptables or ip6tables) does not
/// find in place in `table`.
pub(super) async fn missing_rules(program: &str, table: &str, rules: &[(&str, String)]) -> String {
    let mut missing = String::new();
    for (chain, rule) in rules {
        let check: Vec<&str> = ["-t", table, "-w", "10", "-C", chain]
            .into_iter()
            .chain(rule.split(' '))
            .collect();
        if run(program, &check, None).await.is_err() {
            missing.push_str(&format!("-I {chain} 1 {rule}\n"));
        }
    }
    missing
}

/// Drops every IPv6 packet from `bridge`, to the host or beyond (a
/// sandbox has no IPv6 address, but could make one up).
pub(super) async fn drop_ipv6_from(bridge: &str) -> std::result::Result<(), String> {
    let drop = format!("-i {bridge} -j DROP");
    let restore = missing_rules(
        "ip6tables",
        "filter",
        &[("INPUT", drop.clone()), ("FORWARD", drop)],
    )
    .await;
    if restore.is_empty() {
        return Ok(());
    }
    restore_rules("ip6tables-restore", &format!("*filter\n{restore}COMMIT\n")).await
}

/// The rules of [`CHAIN`] as `iptables -S` prints them.
fn chain_rules(blocked: &[Ipv4Cidr], resolvers: &[std::net::Ipv4Addr]) -> Vec<String> {
    let mut rules = vec![format!("-N {CHAIN}")];
    // The host's resolvers are often in a private range (a cloud's VPC
    // resolver, a router): DNS to them stays open, and nothing else.
    for resolver in resolvers {
        for protocol in ["udp", "tcp"] {
            rules.push(format!(
                "-A {CHAIN} -d {resolver}/32 -p {protocol} -m {protocol} --dport 53 -j RETURN"
            ));
        }
    }
    for range in blocked {
        rules.push(format!("-A {CHAIN} -d {range} -j DROP"));
    }
    rules
}

/// The IPv4 resolvers the host (and so the engine's DNS) uses, except
/// loopback ones, which the engine answers from the host itself.
async fn host_resolvers() -> Vec<std::net::Ipv4Addr> {
    let mut resolvers = nameservers().await;
    resolvers.retain(|address| !address.is_loopback());
    resolvers
}

/// The IPv4 nameservers of the host's resolver configuration, in order.
pub(super) async fn nameservers() -> Vec<std::net::Ipv4Addr> {
    let text = tokio::fs::read_to_string(RESOLV_CONF)
        .await
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|address| address.trim().parse::<std::net::Ipv4Addr>().ok())
        .collect()
}

/// Creates the EGRESS network unless it exists.
async fn ensure_network(docker: &Docker) -> Result<()> {
    match docker.inspect_network(NETWORK, None).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => THE_NETWORK.create(docker).await,
        Err(e) => Err(engine_error("inspecting the EGRESS network", e)),
    }
}

fn refusal(why: String) -> Error {
    Error::failed_precondition(format!(
        "network: NETWORK_MODE_EGRESS cannot be enforced here: {why}; ask for NETWORK_MODE_NONE"
    ))
}

async fn iptables(args: &[&str]) -> std::result::Result<String, String> {
    run("iptables", args, None).await
}

/// Feeds `rules` to `program` (iptables-restore or ip6tables-restore),
/// keeping every rule not named; why it failed, as a sentence.
pub(super) async fn restore_rules(program: &str, rules: &str) -> std::result::Result<(), String> {
    run(program, &["-w", "10", "--noflush"], Some(rules))
        .await
        .map(drop)
        .map_err(|why| format!("installing the firewall rules failed: {why}"))
}

/// Runs a firewall program; its standard output, or why it failed.
pub(super) async fn run(
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> std::result::Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    if let Some(input) = input {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| format!("writing to {program}: {e}"))?;
    }
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_opens_dns_to_the_resolvers_then_drops_each_blocked_range() {
        let blocked = [
            "10.0.0.0/8".parse().unwrap(),
            "169.254.0.0/16".parse().unwrap(),
        ];
        let rules = chain_rules(&blocked, &["10.255.255.53".parse().unwrap()]);
        assert_eq!(
            rules,
            [
                "-N PADDOCK-EGRESS",
                "-A PADDOCK-EGRESS -d 10.255.255.53/32 -p udp -m udp --dport 53 -j RETURN",
                "-A PADDOCK-EGRESS -d 10.255.255.53/32 -p tcp -m tcp --dport 53 -j RETURN",
                "-A PADDOCK-EGRESS -d 10.0.0.0/8 -j DROP",
                "-A PADDOCK-EGRESS -d 169.254.0.0/16 -j DROP",
            ]
        );
    }
}
