//! Port forwarding tried as an attacker would use it: a forward reaches the
//! servers of the caller's own sandbox and nothing else — not the host's
//! loopback services, not a neighbour or another tenant's sandbox, not the
//! host through its gateway; the preview proxy likewise.

use super::network::{SANDBOX_PORT, address_of, gateway_of, listen};
use super::*;
use paddock::pb::port_forward_request::Request as Up;
use paddock::pb::port_forward_response::Response as Down;
use paddock::pb::port_service_client::PortServiceClient;
use tokio_stream::wrappers::ReceiverStream;

/// How long one forward in these tests may take to answer.
const FORWARD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Opens a forward and reads what the server on the other side says first:
/// its first line (the listeners here answer one), or everything it sends
/// before closing. A forward that answers nothing within
/// [`FORWARD_DEADLINE`] fails the test, naming the forward.
async fn forward(
    server: &TestServer,
    key: &str,
    sandbox_id: &str,
    port: u16,
    address: &str,
) -> Result<String, tonic::Status> {
    tokio::time::timeout(
        FORWARD_DEADLINE,
        first_words(server, key, sandbox_id, port, address),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "a forward to port {port} at {address:?} of {sandbox_id} answered nothing within {}s",
            FORWARD_DEADLINE.as_secs()
        )
    })
}

async fn first_words(
    server: &TestServer,
    key: &str,
    sandbox_id: &str,
    port: u16,
    address: &str,
) -> Result<String, tonic::Status> {
    let (requests, outgoing) = tokio::sync::mpsc::channel(4);
    requests
        .send(pb::PortForwardRequest {
            request: Some(Up::Start(pb::PortForwardStart {
                sandbox_id: sandbox_id.into(),
                port: u32::from(port),
                address: address.into(),
            })),
        })
        .await
        .unwrap();
    let mut answers = PortServiceClient::new(with_header(
        server.channel().await,
        Some(format!("Bearer {key}")),
    ))
    .port_forward(ReceiverStream::new(outgoing))
    .await?
    .into_inner();
    let mut said = Vec::new();
    while let Some(answer) = answers.message().await? {
        match answer.response {
            Some(Down::Data(data)) => {
                said.extend_from_slice(&data);
                if said.contains(&b'\n') {
                    break;
                }
            }
            Some(Down::ClosedWrite(_)) => break,
            _ => {}
        }
    }
    drop(requests);
    Ok(String::from_utf8_lossy(&said).into_owned())
}

async fn forwards_reach_only_the_callers_own_sandbox(provider: Provider) {
    let host_service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host_service.local_addr().unwrap().port();
    let server = exposed_server(provider, |_| {}).await;
    let alice_key = make_key(&server, "alice");
    let bob_key = make_key(&server, "bob");
    let mut alice = Tenant::of(&server, "alice").await;
    let mut bob = Tenant::of(&server, "bob").await;
    let offline = pb::CreateSandboxRequest {
        network: pb::NetworkMode::None as i32,
        ..Default::default()
    };
    // The others on their default network, so that they have addresses.
    let attacker = alice.sandbox(offline).await;
    let neighbour = alice.sandbox(Default::default()).await;
    let stranger = bob.sandbox(Default::default()).await;
    listen(&mut alice, &attacker, "own").await;
    listen(&mut alice, &neighbour, "neighbour").await;
    listen(&mut bob, &stranger, "stranger").await;

    // The positive control: the attacker's own server answers.
    let own = forward(&server, &alice_key, &attacker, SANDBOX_PORT, "")
        .await
        .unwrap();
    assert!(own.contains("own"), "{own:?}");

    // The host's loopback service is not the sandbox's loopback.
    for address in ["", "127.0.0.1"] {
        let refused = forward(&server, &alice_key, &attacker, host_port, address)
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::FailedPrecondition,
            "{refused:?}"
        );
    }
    // Another tenant's sandbox does not exist; a neighbour is reached only
    // by its own id, never through the attacker's.
    let hidden = forward(&server, &alice_key, &stranger, SANDBOX_PORT, "")
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    let mut beyond = vec!["192.0.2.1".to_owned(), "169.254.169.254".to_owned()];
    if provider.is_docker() {
        beyond.extend([
            address_of(&neighbour),
            address_of(&stranger),
            gateway_of("bridge"),
        ]);
    }
    for address in beyond.iter().filter(|a| !a.is_empty()) {
        let refused = forward(&server, &alice_key, &attacker, SANDBOX_PORT, address)
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "{address}: {refused:?}"
        );
    }
    // Bob reaches his own, not Alice's.
    let his = forward(&server, &bob_key, &stranger, SANDBOX_PORT, "")
        .await
        .unwrap();
    assert!(his.contains("stranger"));
    assert_eq!(
        forward(&server, &bob_key, &attacker, SANDBOX_PORT, "")
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );
    alice.still_healthy(&attacker).await;
    drop(host_service);
}

#[tokio::test]
async fn process_forwards_reach_only_the_callers_own_sandbox() {
    if !privileged() {
        return;
    }
    forwards_reach_only_the_callers_own_sandbox(Provider::Process).await;
}

#[tokio::test]
async fn docker_forwards_reach_only_the_callers_own_sandbox() {
    if !common::docker::available() || !privileged() {
        return;
    }
    forwards_reach_only_the_callers_own_sandbox(Provider::Docker).await;
}
