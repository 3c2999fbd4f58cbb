//! Reaching out: other sandboxes, the server, the host, link-local and
//! private addresses, from a sandbox on each provider's default network.

use super::dns::StubDns;
use super::outside::{GREETING, HOST_GREETING, Outside, probe_line};
use super::*;

/// Where each sandbox listener answers.
pub(super) const SANDBOX_PORT: u16 = 8080;

/// The egress ranges of the Docker tests: the defaults, but for TEST-NET-3,
/// which stands for the internet here.
fn blocked_but_the_test_internet() -> Vec<String> {
    paddock::sandbox::network::DEFAULT_EGRESS_BLOCKED
        .iter()
        .filter(|range| **range != "203.0.113.0/24")
        .map(|range| (*range).to_owned())
        .collect()
}

fn docker_inspect(container: &str, format: &str) -> String {
    common::docker::docker_output(&["inspect", "-f", format, container])
}

pub(super) fn address_of(sandbox_id: &str) -> String {
    docker_inspect(
        &format!("paddock-{sandbox_id}"),
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    )
}

/// The host's address on an engine network: its IPAM gateway, or (for the
/// default bridge of engines that record none) its subnet's first address,
/// which the engine gives its bridge.
pub(super) fn gateway_of(network: &str) -> String {
    let inspect = |format: &str| {
        common::docker::docker_output(&["network", "inspect", "-f", format, network])
    };
    let gateway = inspect("{{range .IPAM.Config}}{{.Gateway}}{{end}}");
    if !gateway.is_empty() {
        return gateway;
    }
    let subnet = inspect("{{range .IPAM.Config}}{{.Subnet}}{{end}}");
    let base: std::net::Ipv4Addr = subnet
        .split('/')
        .next()
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("network {network} has neither gateway nor subnet"));
    std::net::Ipv4Addr::from(u32::from(base) + 1).to_string()
}

/// The port the server under test listens on (on every address).
fn server_port(server: &TestServer) -> u16 {
    server
        .addr
        .to_string()
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("the server's address ends with its port")
}

/// Starts a listener answering `greeting` on [`SANDBOX_PORT`] in a sandbox
/// and waits until it answers from inside.
pub(super) async fn listen(tenant: &mut Tenant, sandbox_id: &str, greeting: &str) {
    tenant
        .start(
            sandbox_id,
            &format!("busybox nc -ll -p {SANDBOX_PORT} -e /bin/echo {greeting}"),
        )
        .await;
    for _ in 0..100 {
        let ran = tenant
            .run(
                sandbox_id,
                &format!("busybox nc -w 1 127.0.0.1 {SANDBOX_PORT} </dev/null"),
            )
            .await;
        if ran.stdout.contains(greeting) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the listener in {sandbox_id} never answered");
}

#[tokio::test]
async fn docker_egress_reaches_the_internet_and_nothing_else() {
    if !common::docker::available() || !privileged() {
        return;
    }
    let outside = Outside::set_up(1);
    let server = exposed_server(Provider::Docker, |args| {
        args.egress_blocked_ranges = Some(blocked_but_the_test_internet());
    })
    .await;
    let server_port = server_port(&server);
    let mut alpha = Tenant::of(&server, "alpha").await;
    let mut beta = Tenant::of(&server, "beta").await;
    let attacker = alpha.sandbox(Default::default()).await;
    let neighbour = alpha.sandbox(Default::default()).await;
    let stranger = beta.sandbox(Default::default()).await;
    listen(&mut alpha, &neighbour, "neighbour").await;
    listen(&mut beta, &stranger, "stranger").await;

    let gateway = gateway_of("paddock-egress");
    let docker0 = gateway_of("bridge");
    let forbidden = vec![
        (address_of(&neighbour), SANDBOX_PORT),
        (address_of(&stranger), SANDBOX_PORT),
        (gateway.clone(), server_port),
        (gateway.clone(), outside.host_port),
        (docker0, outside.host_port),
        (outside.host_public.clone(), outside.host_port),
        (outside.private.clone(), 8080),
        (outside.link_local.clone(), 8080),
    ];
    let mut targets = forbidden.clone();
    targets.push((outside.public.clone(), 8080));
    let ran = alpha.run(&attacker, &probe_line(&targets)).await;
    // The positive control: the same probe reaches the internet.
    assert!(
        ran.stdout
            .contains(&format!("CONNECTED {} 8080: {GREETING}", outside.public)),
        "EGRESS must reach the internet: {ran:?}"
    );
    for (address, port) in &forbidden {
        assert!(
            !ran.stdout.contains(&format!("CONNECTED {address} {port}")),
            "reached {address}:{port} from an EGRESS sandbox: {}",
            ran.stdout
        );
    }
    // No IPv6 address, global or link-local, to go around the IPv4 rules.
    let ipv6 = alpha
        .run(
            &attacker,
            "ip -6 addr show scope global; ip -6 addr show scope link",
        )
        .await;
    assert_eq!(ipv6.stdout, "", "{ipv6:?}");

    alpha.still_healthy(&attacker).await;
    alpha.still_healthy(&neighbour).await;
    beta.still_healthy(&stranger).await;
}

#[tokio::test]
async fn docker_allow_list_reaches_allowed_names_and_ranges_and_nothing_else() {
    if !common::docker::available() || !privileged() {
        return;
    }
    let outside = Outside::set_up(4);
    let dns = StubDns::start(&[
        ("allowed.paddock.test", &outside.public),
        ("x.wild.paddock.test", &outside.public),
        ("other.paddock.test", &outside.other_public),
        // DNS rebinding: an allowed name that resolves to a private address.
        ("rebind.paddock.test", &outside.private),
    ]);
    let server = exposed_server(Provider::Docker, |args| {
        args.egress_blocked_ranges = Some(blocked_but_the_test_internet());
        args.allow_list_dns = Some(vec![dns.address.to_string()]);
        // Every tenant's policy: test names and the test internet, and a
        // private range the server's blocked ranges still keep out.
        args.quota.quota_allowed_hosts = Some(vec![
            "*.paddock.test".into(),
            "203.0.113.0/24".into(),
            "10.0.0.0/8".into(),
        ]);
    })
    .await;
    let server_port = server_port(&server);
    let allow = |hosts: &[&str]| pb::CreateSandboxRequest {
        network: pb::NetworkMode::AllowList as i32,
        allowed_hosts: hosts.iter().map(|host| (*host).to_owned()).collect(),
        ..Default::default()
    };
    let mut alpha = Tenant::of(&server, "alpha").await;
    let mut beta = Tenant::of(&server, "beta").await;
    let by_name = allow(&[
        "Allowed.Paddock.Test",
        "*.wild.paddock.test",
        "rebind.paddock.test",
    ]);
    let attacker = alpha.sandbox(by_name.clone()).await;
    let neighbour = alpha.sandbox(by_name).await;
    let stranger = beta.sandbox(allow(&[])).await;
    listen(&mut alpha, &neighbour, "neighbour").await;
    listen(&mut beta, &stranger, "stranger").await;
    let listed = alpha
        .sandboxes
        .get_sandbox(pb::GetSandboxRequest {
            sandbox_id: attacker.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(listed.network, pb::NetworkMode::AllowList as i32);
    assert_eq!(
        listed.allowed_hosts,
        [
            "allowed.paddock.test",
            "*.wild.paddock.test",
            "rebind.paddock.test"
        ]
    );

    let gateway = gateway_of("paddock-allow");
    let forbidden = vec![
        (outside.other_public.clone(), 8080),
        ("other.paddock.test".to_owned(), 8080),
        ("rebind.paddock.test".to_owned(), 8080),
        (address_of(&neighbour), SANDBOX_PORT),
        (address_of(&stranger), SANDBOX_PORT),
        (gateway.clone(), server_port),
        (gateway.clone(), outside.host_port),
        (gateway_of("bridge"), outside.host_port),
        (outside.host_public.clone(), outside.host_port),
        (outside.private.clone(), 8080),
        (outside.link_local.clone(), 8080),
    ];
    let reachable = [
        ("allowed.paddock.test".to_owned(), 8080),
        ("x.wild.paddock.test".to_owned(), 8080),
    ];
    let probe = |targets: &[(String, u16)]| probe_line(targets);
    let mut targets = forbidden.clone();
    targets.extend(reachable.iter().cloned());
    let ran = alpha.run(&attacker, &probe(&targets)).await;
    for (name, port) in &reachable {
        assert!(
            ran.stdout
                .contains(&format!("CONNECTED {name} {port}: {GREETING}")),
            "ALLOW_LIST must reach the allowed {name}: {ran:?}"
        );
    }
    for (address, port) in &forbidden {
        assert!(
            !ran.stdout.contains(&format!("CONNECTED {address} {port}")),
            "reached {address}:{port} from an ALLOW_LIST sandbox: {}",
            ran.stdout
        );
    }
    // DNS answers allowed names only, whichever server a query is sent to;
    // a name not allowed never leaves for upstream, and an allowed name's
    // private address is not answered.
    let lookups = alpha
        .run(
            &attacker,
            &format!(
                "for server in '' {public} 8.8.8.8; do \
                   for name in other.paddock.test rebind.paddock.test allowed.paddock.test; do \
                     echo \"$name via ${{server:-default}}: $(busybox nslookup $name $server 2>&1 \
                       | grep -c '^Address.*{public}$')\"; \
                   done; \
                 done",
                public = outside.public,
            ),
        )
        .await;
    for server in ["default", &outside.public, "8.8.8.8"] {
        assert!(
            lookups
                .stdout
                .contains(&format!("allowed.paddock.test via {server}: 1")),
            "{lookups:?}"
        );
        assert!(
            lookups
                .stdout
                .contains(&format!("other.paddock.test via {server}: 0")),
            "{lookups:?}"
        );
    }
    assert!(
        !dns.asked().contains(&"other.paddock.test".to_owned()),
        "a name not allowed reached the upstream DNS server: {:?}",
        dns.asked()
    );
    let rebound = alpha
        .run(&attacker, "busybox nslookup rebind.paddock.test")
        .await;
    assert!(
        !rebound.stdout.contains(&outside.private),
        "a private address was answered: {rebound:?}"
    );

    // An IPv4 range is reachable by address, and only it.
    let ranged = alpha
        .sandbox(allow(&[&format!("{}/32", outside.other_public)]))
        .await;
    let ran = alpha
        .run(
            &ranged,
            &probe(&[
                (outside.other_public.clone(), 8080),
                (outside.public.clone(), 8080),
                ("allowed.paddock.test".to_owned(), 8080),
            ]),
        )
        .await;
    assert!(
        ran.stdout.contains(&format!(
            "CONNECTED {} 8080: {GREETING}",
            outside.other_public
        )),
        "{ran:?}"
    );
    assert_eq!(ran.stdout.matches("CONNECTED").count(), 1, "{ran:?}");

    // Stopped and started again (perhaps on another address), a sandbox
    // gets its rules back before its start returns.
    alpha
        .sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: attacker.clone(),
        })
        .await
        .unwrap();
    alpha
        .sandboxes
        .start_sandbox(pb::StartSandboxRequest {
            sandbox_id: attacker.clone(),
        })
        .await
        .unwrap();
    let ran = alpha
        .run(
            &attacker,
            &probe(&[
                ("allowed.paddock.test".to_owned(), 8080),
                (outside.other_public.clone(), 8080),
            ]),
        )
        .await;
    assert!(
        ran.stdout
            .contains(&format!("CONNECTED allowed.paddock.test 8080: {GREETING}")),
        "{ran:?}"
    );
    assert_eq!(ran.stdout.matches("CONNECTED").count(), 1, "{ran:?}");

    // What cannot be enforced or would open a blocked range is refused.
    for (request, code, says) in [
        (
            pb::CreateSandboxRequest {
                allowed_hosts: vec!["pypi.org".into()],
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
            "only a NETWORK_MODE_ALLOW_LIST sandbox",
        ),
        (
            allow(&["10.0.0.0/8"]),
            tonic::Code::InvalidArgument,
            "never lets sandboxes reach",
        ),
        (
            allow(&["exa mple.com"]),
            tonic::Code::InvalidArgument,
            "not a domain name",
        ),
        (
            allow(&["allowed.paddock.test", "pypi.org"]),
            tonic::Code::PermissionDenied,
            "pypi.org is outside what tenant alpha may allow",
        ),
    ] {
        let refused = alpha.sandboxes.create_sandbox(request).await.unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
        assert!(refused.message().contains(says), "{}", refused.message());
    }

    alpha.still_healthy(&attacker).await;
    alpha.still_healthy(&neighbour).await;
    beta.still_healthy(&stranger).await;
}

#[tokio::test]
async fn docker_bridge_is_refused_unless_the_operator_allows_it_and_then_is_open() {
    if !common::docker::available() || !privileged() {
        return;
    }
    let outside = Outside::set_up(2);
    let refusing = exposed_server(Provider::Docker, |_| {}).await;
    let refused = Tenant::of(&refusing, "alpha")
        .await
        .sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            network: pb::NetworkMode::Bridge as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("--allow-bridge-network"),
        "{}",
        refused.message()
    );

    // Allowed, BRIDGE is as open as it says: the probe that finds every
    // door shut from EGRESS finds these open, so it can tell.
    let server = exposed_server(Provider::Docker, |args| {
        args.allow_bridge_network = Some(true);
    })
    .await;
    let mut alpha = Tenant::of(&server, "alpha").await;
    let open = pb::CreateSandboxRequest {
        network: pb::NetworkMode::Bridge as i32,
        ..Default::default()
    };
    let attacker = alpha.sandbox(open.clone()).await;
    let neighbour = alpha.sandbox(open).await;
    listen(&mut alpha, &neighbour, "neighbour").await;
    let server_port = server_port(&server);
    let targets = vec![
        (address_of(&neighbour), SANDBOX_PORT),
        (gateway_of("bridge"), outside.host_port),
        (gateway_of("bridge"), server_port),
        (outside.private.clone(), 8080),
    ];
    let ran = alpha.run(&attacker, &probe_line(&targets)).await;
    for (address, port) in &targets {
        assert!(
            ran.stdout.contains(&format!("CONNECTED {address} {port}")),
            "BRIDGE should reach {address}:{port}: {ran:?}"
        );
    }
    assert!(ran.stdout.contains(HOST_GREETING), "{ran:?}");
}

#[tokio::test]
async fn process_sandboxes_reach_nothing_on_their_default_network() {
    if !privileged() {
        return;
    }
    let outside = Outside::set_up(3);
    let server = exposed_server(Provider::Process, |_| {}).await;
    let server_port = server_port(&server);
    let mut alpha = Tenant::of(&server, "alpha").await;
    let mut beta = Tenant::of(&server, "beta").await;
    let attacker = alpha.sandbox(Default::default()).await;
    let stranger = beta.sandbox(Default::default()).await;
    listen(&mut beta, &stranger, "stranger").await;
    let targets = vec![
        ("127.0.0.1".to_owned(), server_port),
        ("127.0.0.1".to_owned(), outside.host_port),
        ("127.0.0.1".to_owned(), SANDBOX_PORT),
        (outside.host_public.clone(), outside.host_port),
        (outside.public.clone(), 8080),
        (outside.private.clone(), 8080),
        (outside.link_local.clone(), 8080),
    ];
    let ran = alpha.run(&attacker, &probe_line(&targets)).await;
    assert!(
        !ran.stdout.contains("CONNECTED"),
        "a process sandbox on NETWORK_MODE_NONE reached out: {ran:?}"
    );
    for mode in [pb::NetworkMode::Egress, pb::NetworkMode::AllowList] {
        let refused = alpha
            .sandboxes
            .create_sandbox(pb::CreateSandboxRequest {
                network: mode as i32,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(
            refused.message().contains(mode.as_str_name()),
            "{}",
            refused.message()
        );
    }

    // The positive control: on the host's network (BRIDGE, allowed) the
    // same probe connects.
    let open_server = exposed_server(Provider::Process, |args| {
        args.allow_bridge_network = Some(true);
    })
    .await;
    let mut open = Tenant::of(&open_server, "alpha").await;
    let exposed = open
        .sandbox(pb::CreateSandboxRequest {
            network: pb::NetworkMode::Bridge as i32,
            ..Default::default()
        })
        .await;
    let ran = open.run(&exposed, &probe_line(&targets[..2])).await;
    assert!(
        ran.stdout.contains(HOST_GREETING),
        "BRIDGE on the process provider is the host's network: {ran:?}"
    );
    alpha.still_healthy(&attacker).await;
    beta.still_healthy(&stranger).await;
}
