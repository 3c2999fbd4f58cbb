//! The service as a whole: health, reflection, providers, a Unix socket,
//! and a graceful shutdown.

use super::*;

#[tokio::test]
async fn health_reports_every_service_serving() {
    let server = TestServer::start().await;
    let mut health = server.health().await;
    for service in [
        "",
        "paddock.v1.SandboxService",
        "paddock.v1.ExecService",
        "paddock.v1.FileService",
        "paddock.v1.PortService",
        "paddock.v1.VolumeService",
        "paddock.v1.TemplateService",
    ] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }
}

#[tokio::test]
async fn reflection_lists_services_in_both_versions() {
    use tonic_reflection::pb::{v1, v1alpha};
    let server = TestServer::start().await;
    let expected = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "paddock.v1.ExecService",
        "paddock.v1.FileService",
        "paddock.v1.PortService",
        "paddock.v1.SandboxService",
        "paddock.v1.TemplateService",
        "paddock.v1.VolumeService",
    ];

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("v1alpha did not list services");
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, expected);

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("v1 did not list services");
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn list_providers_reports_the_process_provider_honestly() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let providers = client
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["docker", "process"]);
    let process = &providers[1];
    assert!(process.available && process.is_default);
    let confined = process.isolation.starts_with("bubblewrap");
    assert!(
        confined || process.isolation.starts_with("none"),
        "{}",
        process.isolation
    );
    assert_eq!(
        process.capabilities,
        Some(pb::ProviderCapabilities {
            tty: true,
            signals: true,
            stop_start: true,
            exec: true,
            files: true,
            network_none: confined,
            volumes: confined,
            port_forward: true,
            warm_pools: true,
            ..Default::default()
        })
    );
}

#[tokio::test]
async fn serves_on_a_unix_socket() {
    let temp = tempfile::tempdir().unwrap();
    let socket = temp.path().join("run/paddock.sock");
    let server = TestServer::start_with(|args| {
        args.listen = Some(format!("unix:{}", socket.display()));
    })
    .await;
    let sandbox = server.create(Default::default()).await;
    assert_eq!(state(&sandbox), pb::SandboxState::Running);
    server.stop().await;
    assert!(!socket.exists(), "the socket file is removed on shutdown");
}

#[tokio::test]
async fn graceful_shutdown_ends_open_watch_streams() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let mut events = client
        .watch_sandboxes(pb::WatchSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The harness fails if shutdown takes longer than 10 s, and the grace is
    // 5 s: the open stream must not hold the server up.
    let started = std::time::Instant::now();
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let end = events.message().await;
    assert!(
        matches!(end, Ok(None) | Err(_)),
        "the stream ended: {end:?}"
    );
}
