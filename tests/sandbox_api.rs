//! SandboxService through gRPC, as a user calls it, against the real server
//! on the process provider and SQLite.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestServer, eventually};
use futures::StreamExt;
use paddock::pb;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

type Client = SandboxServiceClient<Channel>;

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn create(client: &mut Client, request: pb::CreateSandboxRequest) -> pb::Sandbox {
    client
        .create_sandbox(request)
        .await
        .expect("create succeeds")
        .into_inner()
        .sandbox
        .expect("a sandbox")
}

async fn get(client: &mut Client, id: &str) -> pb::Sandbox {
    client
        .get_sandbox(pb::GetSandboxRequest {
            sandbox_id: id.to_owned(),
        })
        .await
        .expect("get succeeds")
        .into_inner()
        .sandbox
        .expect("a sandbox")
}

fn state(sandbox: &pb::Sandbox) -> pb::SandboxState {
    pb::SandboxState::try_from(sandbox.state).expect("known state")
}

/// Polls the sandbox until it is in `wanted`, for up to 10 s.
async fn wait_for_state(client: &Client, id: &str, wanted: pb::SandboxState) -> pb::Sandbox {
    eventually(
        Duration::from_secs(10),
        &format!("{id} to become {wanted:?}"),
        || {
            let mut client = client.clone();
            let id = id.to_owned();
            async move {
                let sandbox = get(&mut client, &id).await;
                (state(&sandbox) == wanted).then_some(sandbox)
            }
        },
    )
    .await
}

fn named(name: &str) -> pb::CreateSandboxRequest {
    pb::CreateSandboxRequest {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

#[tokio::test]
async fn health_reports_every_service_serving() {
    let server = TestServer::start().await;
    let mut health = server.health().await;
    for service in ["", "paddock.v1.SandboxService", "paddock.v1.ExecService"] {
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
        "paddock.v1.SandboxService",
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
async fn create_get_stop_start_delete() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;

    let created = client
        .create_sandbox(pb::CreateSandboxRequest {
            name: Some("lifecycle".into()),
            labels: labels(&[("team", "ml")]),
            workdir: "/work/src".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.created);
    let sandbox = created.sandbox.unwrap();
    assert!(sandbox.id.starts_with("sbx_"));
    assert_eq!(state(&sandbox), pb::SandboxState::Running);
    assert_eq!(sandbox.provider, "process");
    assert_eq!(sandbox.workdir, "/work/src");
    assert!(sandbox.start_time.is_some());
    assert!(
        sandbox.expire_time.is_some(),
        "the default lifetime applies"
    );
    let dir = server.sandbox_dir(&sandbox.id);
    assert!(
        dir.join("rootfs/work/src").is_dir(),
        "workdir made inside the sandbox"
    );
    assert_eq!(sandbox.provider_ref, dir.display().to_string());

    assert_eq!(get(&mut client, &sandbox.id).await, sandbox);

    let stopped = client
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(state(&stopped), pb::SandboxState::Stopped);
    assert_eq!(stopped.state_reason, "stopped by request");
    assert!(dir.is_dir(), "stop keeps the filesystem");

    let started = client
        .start_sandbox(pb::StartSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(state(&started), pb::SandboxState::Running);
    assert!(started.revision > stopped.revision);

    let deleted = client
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(state(&deleted), pb::SandboxState::Deleted);
    assert!(!dir.exists(), "delete removes the directory");

    // The record stays for audit, and the name is free again.
    assert_eq!(
        state(&get(&mut client, &sandbox.id).await),
        pb::SandboxState::Deleted
    );
    let again = create(&mut client, named("lifecycle")).await;
    assert_ne!(again.id, sandbox.id);
}

#[tokio::test]
async fn repeated_actions_are_idempotent_and_illegal_ones_say_why() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let sandbox = create(&mut client, Default::default()).await;
    let id = || sandbox.id.clone();

    client
        .start_sandbox(pb::StartSandboxRequest { sandbox_id: id() })
        .await
        .expect("starting a running sandbox succeeds");
    client
        .stop_sandbox(pb::StopSandboxRequest { sandbox_id: id() })
        .await
        .unwrap();
    let again = client
        .stop_sandbox(pb::StopSandboxRequest { sandbox_id: id() })
        .await
        .expect("stopping a stopped sandbox succeeds")
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(state(&again), pb::SandboxState::Stopped);

    client
        .delete_sandbox(pb::DeleteSandboxRequest { sandbox_id: id() })
        .await
        .unwrap();
    client
        .delete_sandbox(pb::DeleteSandboxRequest { sandbox_id: id() })
        .await
        .expect("deleting a deleted sandbox succeeds");

    let status = client
        .start_sandbox(pb::StartSandboxRequest { sandbox_id: id() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("is DELETED"),
        "{}",
        status.message()
    );

    let status = client
        .stop_sandbox(pb::StopSandboxRequest { sandbox_id: id() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    let status = client
        .update_sandbox(pb::UpdateSandboxRequest {
            sandbox_id: id(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn get_or_create_by_name_returns_the_same_sandbox() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let first = create(&mut client, named("shared")).await;

    let status = client.create_sandbox(named("shared")).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains(&first.id), "{}", status.message());

    let again = client
        .create_sandbox(pb::CreateSandboxRequest {
            if_exists: pb::IfExists::ReturnExisting as i32,
            ..named("shared")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.sandbox.unwrap().id, first.id);
}

#[tokio::test]
async fn request_id_makes_retries_safe() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let request = pb::CreateSandboxRequest {
        request_id: "retry-me".into(),
        labels: labels(&[("k", "v")]),
        ..Default::default()
    };

    // Concurrent retries: exactly one sandbox is made.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client = client.clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            client.create_sandbox(request).await.unwrap().into_inner()
        }));
    }
    let mut ids = Vec::new();
    let mut made = 0;
    for task in tasks {
        let response = task.await.unwrap();
        made += usize::from(response.created);
        ids.push(response.sandbox.unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every retry answers with the same sandbox");
    assert_eq!(made, 1, "only one request made it");

    let status = client
        .create_sandbox(pb::CreateSandboxRequest {
            labels: labels(&[("k", "other")]),
            ..request
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("request_id:"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn list_filters_by_state_and_labels_and_pages() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let mut ml = Vec::new();
    for i in 0..23 {
        let team = if i % 2 == 0 { "ml" } else { "web" };
        let sandbox = create(
            &mut client,
            pb::CreateSandboxRequest {
                labels: labels(&[("team", team), ("idx", &i.to_string())]),
                ..Default::default()
            },
        )
        .await;
        if team == "ml" {
            ml.push(sandbox.id);
        }
    }
    let stopped = ml[0].clone();
    client
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: stopped.clone(),
        })
        .await
        .unwrap();

    // Page through team=ml five at a time: newest first, nothing repeated.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_sandboxes(pb::ListSandboxesRequest {
                label_selector: "team=ml".into(),
                page_size: 5,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.sandboxes.len() <= 5);
        seen.extend(page.sandboxes.into_iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut newest_first = ml.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let running_ml = client
        .list_sandboxes(pb::ListSandboxesRequest {
            label_selector: "team=ml".into(),
            states: vec![pb::SandboxState::Running as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert_eq!(running_ml.len(), ml.len() - 1);
    assert!(running_ml.iter().all(|s| s.id != stopped));

    for (selector, count) in [
        ("team!=ml", 11),
        ("team", 23),
        ("!team", 0),
        ("team=web,idx=3", 1),
        ("team=web,idx=4", 0),
    ] {
        let found = client
            .list_sandboxes(pb::ListSandboxesRequest {
                label_selector: selector.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .sandboxes;
        assert_eq!(found.len(), count, "selector {selector:?}");
    }

    // A token is bound to the filters it was made for.
    let page = client
        .list_sandboxes(pb::ListSandboxesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let status = client
        .list_sandboxes(pb::ListSandboxesRequest {
            page_size: 2,
            page_token: page.next_page_token,
            label_selector: "team=ml".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn deleted_sandboxes_are_listed_only_when_asked_for() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let sandbox = create(&mut client, Default::default()).await;
    client
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();
    let default_list = client
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert!(default_list.is_empty());
    let deleted = client
        .list_sandboxes(pb::ListSandboxesRequest {
            states: vec![pb::SandboxState::Deleted as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].id, sandbox.id);
}

#[tokio::test]
async fn update_changes_labels_metadata_and_lifetime() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let sandbox = create(
        &mut client,
        pb::CreateSandboxRequest {
            labels: labels(&[("old", "1")]),
            ..Default::default()
        },
    )
    .await;
    let metadata = prost_types::Struct {
        fields: [(
            "purpose".to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("eval".into())),
            },
        )]
        .into(),
    };
    let updated = client
        .update_sandbox(pb::UpdateSandboxRequest {
            sandbox_id: sandbox.id.clone(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels".into(), "metadata".into(), "timeout".into()],
            }),
            labels: labels(&[("new", "2")]),
            metadata: Some(metadata.clone()),
            timeout: Some(prost_types::Duration {
                seconds: 7200,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(updated.labels, labels(&[("new", "2")]));
    assert_eq!(updated.metadata, Some(metadata));
    let expires = updated.expire_time.unwrap().seconds;
    let created = updated.create_time.unwrap().seconds;
    assert!(
        expires - created >= 7199,
        "lifetime extended to 2h from now"
    );
    assert_eq!(get(&mut client, &sandbox.id).await, updated);

    // Fields not in the mask stay.
    let relabelled = client
        .update_sandbox(pb::UpdateSandboxRequest {
            sandbox_id: sandbox.id.clone(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels".into()],
            }),
            labels: labels(&[("x", "y")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(relabelled.metadata, updated.metadata);
    assert_eq!(relabelled.expire_time, updated.expire_time);

    let by_new_label = client
        .list_sandboxes(pb::ListSandboxesRequest {
            label_selector: "x=y".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert_eq!(by_new_label.len(), 1, "the label index follows updates");
}

#[tokio::test]
async fn env_values_are_never_returned() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let secret = "s3cr3t-value-that-must-not-leak";
    let response = client
        .create_sandbox(pb::CreateSandboxRequest {
            env: [("API_TOKEN".to_string(), secret.to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sandbox = response.sandbox.clone().unwrap();
    assert_eq!(sandbox.env_keys, vec!["API_TOKEN".to_string()]);

    let mut encoded = response.encode_to_vec();
    encoded.extend(get(&mut client, &sandbox.id).await.encode_to_vec());
    let mut events = client
        .watch_sandboxes(pb::WatchSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        encoded.extend(events.message().await.unwrap().unwrap().encode_to_vec());
    }
    let needle = secret.as_bytes();
    assert!(
        !encoded.windows(needle.len()).any(|w| w == needle),
        "an env value appeared in a response"
    );
}

#[tokio::test]
async fn watch_streams_every_change_and_resumes() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let mut events = client
        .watch_sandboxes(pb::WatchSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();

    let sandbox = create(&mut client, Default::default()).await;
    let id = sandbox.id.clone();
    client
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    client
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: id.clone(),
        })
        .await
        .unwrap();

    use pb::SandboxState as S;
    let expected = [
        S::Pending,
        S::Starting,
        S::Running,
        S::Stopping,
        S::Stopped,
        S::Deleting,
        S::Deleted,
    ];
    let mut received = Vec::new();
    for _ in expected {
        let event = tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .expect("an event within 5s")
            .unwrap()
            .unwrap();
        received.push(event);
    }
    let states: Vec<_> = received
        .iter()
        .map(|e| state(e.sandbox.as_ref().unwrap()))
        .collect();
    assert_eq!(states, expected);
    assert_eq!(received[0].r#type, pb::SandboxEventType::Created as i32);
    assert!(received.windows(2).all(|w| w[0].revision < w[1].revision));
    assert!(
        received
            .iter()
            .all(|e| e.sandbox.as_ref().unwrap().revision == e.revision)
    );

    // Resume after the third event: the rest arrive, nothing before.
    let mut resumed = client
        .watch_sandboxes(pb::WatchSandboxesRequest {
            after_revision: received[2].revision,
            sandbox_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    for want in &received[3..] {
        let got = tokio::time::timeout(Duration::from_secs(5), resumed.message())
            .await
            .expect("a resumed event within 5s")
            .unwrap()
            .unwrap();
        assert_eq!(&got, want);
    }

    // A watch limited to one sandbox sees nothing of another.
    let other = create(&mut client, Default::default()).await;
    let quiet = tokio::time::timeout(Duration::from_millis(300), resumed.message()).await;
    assert!(
        quiet.is_err(),
        "no event of {} on a watch of {id}",
        other.id
    );
}

#[tokio::test]
async fn expired_sandboxes_are_deleted_and_idle_ones_stopped() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let short_lived = create(
        &mut client,
        pb::CreateSandboxRequest {
            timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await;
    let idle = create(
        &mut client,
        pb::CreateSandboxRequest {
            idle_timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await;

    let expired = wait_for_state(&client, &short_lived.id, pb::SandboxState::Deleted).await;
    assert!(
        expired.state_reason.contains("lifetime"),
        "{}",
        expired.state_reason
    );
    assert!(!server.sandbox_dir(&short_lived.id).exists());

    let stopped = wait_for_state(&client, &idle.id, pb::SandboxState::Stopped).await;
    assert!(
        stopped.state_reason.contains("idle"),
        "{}",
        stopped.state_reason
    );
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
    let mut client = server.sandboxes().await;
    let sandbox = create(&mut client, Default::default()).await;
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
