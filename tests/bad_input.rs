//! Malformed requests get the right status and a message that names the
//! field; nothing panics and nothing is left behind.

mod common;

use common::TestServer;
use paddock::pb;
use tonic::Code;

fn text(len: usize) -> String {
    "a".repeat(len)
}

#[tokio::test]
async fn create_rejects_bad_input_with_the_field_named() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;
    let duration = |seconds, nanos| Some(prost_types::Duration { seconds, nanos });
    let many_labels = (0..65)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();

    let cases: Vec<(&str, pb::CreateSandboxRequest, Code, &str)> = vec![
        (
            "empty name",
            pb::CreateSandboxRequest {
                name: Some(String::new()),
                ..Default::default()
            },
            Code::InvalidArgument,
            "name:",
        ),
        (
            "overlong name",
            pb::CreateSandboxRequest {
                name: Some(text(64)),
                ..Default::default()
            },
            Code::InvalidArgument,
            "name:",
        ),
        (
            "uppercase name",
            pb::CreateSandboxRequest {
                name: Some("Web".into()),
                ..Default::default()
            },
            Code::InvalidArgument,
            "name:",
        ),
        (
            "bad label key",
            pb::CreateSandboxRequest {
                labels: [("bad key".to_string(), "v".to_string())].into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "labels:",
        ),
        (
            "bad label value",
            pb::CreateSandboxRequest {
                labels: [("k".to_string(), "-bad-".to_string())].into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "labels[",
        ),
        (
            "too many labels",
            pb::CreateSandboxRequest {
                labels: many_labels,
                ..Default::default()
            },
            Code::InvalidArgument,
            "labels:",
        ),
        (
            "unknown provider",
            pb::CreateSandboxRequest {
                provider: "kvm".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "provider:",
        ),
        (
            "unknown enum value",
            pb::CreateSandboxRequest {
                if_exists: 7,
                ..Default::default()
            },
            Code::InvalidArgument,
            "if_exists:",
        ),
        (
            "return-existing without a name",
            pb::CreateSandboxRequest {
                if_exists: pb::IfExists::ReturnExisting as i32,
                ..Default::default()
            },
            Code::InvalidArgument,
            "if_exists:",
        ),
        (
            "bad env name",
            pb::CreateSandboxRequest {
                env: [("1ABC".to_string(), "v".to_string())].into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "env:",
        ),
        (
            "relative workdir",
            pb::CreateSandboxRequest {
                workdir: "src".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "workdir:",
        ),
        (
            "workdir escaping with ..",
            pb::CreateSandboxRequest {
                workdir: "/work/../etc".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "workdir:",
        ),
        (
            "zero timeout",
            pb::CreateSandboxRequest {
                timeout: duration(0, 0),
                ..Default::default()
            },
            Code::InvalidArgument,
            "timeout:",
        ),
        (
            "negative timeout",
            pb::CreateSandboxRequest {
                timeout: duration(-5, 0),
                ..Default::default()
            },
            Code::InvalidArgument,
            "timeout:",
        ),
        (
            "timeout over the server's limit",
            pb::CreateSandboxRequest {
                timeout: duration(30 * 24 * 3600, 0),
                ..Default::default()
            },
            Code::InvalidArgument,
            "timeout:",
        ),
        (
            "negative idle timeout",
            pb::CreateSandboxRequest {
                idle_timeout: duration(0, -1),
                ..Default::default()
            },
            Code::InvalidArgument,
            "idle_timeout:",
        ),
        (
            "negative cpu",
            pb::CreateSandboxRequest {
                resources: Some(pb::Resources {
                    cpu_millis: -1,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::InvalidArgument,
            "resources.cpu_millis:",
        ),
        (
            "image and template",
            pb::CreateSandboxRequest {
                image: "busybox".into(),
                template: "python".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "template:",
        ),
        (
            "unknown template",
            pb::CreateSandboxRequest {
                template: "python".into(),
                ..Default::default()
            },
            Code::NotFound,
            "template:",
        ),
        (
            "an image on the process provider",
            pb::CreateSandboxRequest {
                image: "busybox".into(),
                ..Default::default()
            },
            Code::FailedPrecondition,
            "image:",
        ),
        (
            "limits on the process provider",
            pb::CreateSandboxRequest {
                resources: Some(pb::Resources {
                    memory_bytes: 512 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::FailedPrecondition,
            "resources:",
        ),
        (
            "volumes on the process provider",
            pb::CreateSandboxRequest {
                volumes: vec![pb::Volume {
                    name: "cache".into(),
                    mount_path: "/cache".into(),
                    read_only: false,
                }],
                ..Default::default()
            },
            Code::FailedPrecondition,
            "volumes:",
        ),
        (
            "overlong request id",
            pb::CreateSandboxRequest {
                request_id: text(129),
                ..Default::default()
            },
            Code::InvalidArgument,
            "request_id:",
        ),
        (
            "NaN in metadata",
            pb::CreateSandboxRequest {
                metadata: Some(prost_types::Struct {
                    fields: [(
                        "x".to_string(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::NumberValue(f64::NAN)),
                        },
                    )]
                    .into(),
                }),
                ..Default::default()
            },
            Code::InvalidArgument,
            "metadata:",
        ),
        (
            "oversized metadata",
            pb::CreateSandboxRequest {
                metadata: Some(prost_types::Struct {
                    fields: [(
                        "blob".to_string(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue(text(70_000))),
                        },
                    )]
                    .into(),
                }),
                ..Default::default()
            },
            Code::InvalidArgument,
            "metadata:",
        ),
    ];

    for (case, request, code, prefix) in cases {
        let status = client
            .create_sandbox(request)
            .await
            .expect_err(&format!("{case}: must be refused"));
        assert_eq!(status.code(), code, "{case}: {}", status.message());
        assert!(
            status.message().starts_with(prefix),
            "{case}: message {:?} should start with {prefix:?}",
            status.message()
        );
    }

    // Nothing was made by any refused request.
    let listed = common::every_sandbox(&mut client).await;
    assert!(listed.is_empty(), "refused requests left {listed:?}");
    let dirs = std::fs::read_dir(server.data_dir.join("sandboxes"))
        .unwrap()
        .count();
    assert_eq!(dirs, 0, "refused requests left provider directories");
}

#[tokio::test]
async fn ids_tokens_and_filters_are_checked() {
    let server = TestServer::start().await;
    let mut client = server.sandboxes().await;

    let status = client
        .get_sandbox(pb::GetSandboxRequest {
            sandbox_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "sandbox_id: is required");

    let status = client
        .get_sandbox(pb::GetSandboxRequest {
            sandbox_id: "sbx_nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let unknown = "sbx_0123456789abcdef0123456789abcdef".to_string();
    let status = client
        .get_sandbox(pb::GetSandboxRequest {
            sandbox_id: unknown.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains(&unknown));

    for status in [
        client
            .stop_sandbox(pb::StopSandboxRequest {
                sandbox_id: unknown.clone(),
            })
            .await
            .unwrap_err(),
        client
            .start_sandbox(pb::StartSandboxRequest {
                sandbox_id: unknown.clone(),
            })
            .await
            .unwrap_err(),
        client
            .delete_sandbox(pb::DeleteSandboxRequest {
                sandbox_id: unknown.clone(),
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::NotFound, "{}", status.message());
    }
    let status = client
        .watch_sandboxes(pb::WatchSandboxesRequest {
            sandbox_id: unknown.clone(),
            after_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    let list_cases: Vec<(pb::ListSandboxesRequest, &str)> = vec![
        (
            pb::ListSandboxesRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size:",
        ),
        (
            pb::ListSandboxesRequest {
                page_size: 1001,
                ..Default::default()
            },
            "page_size:",
        ),
        (
            pb::ListSandboxesRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            "page_token:",
        ),
        (
            pb::ListSandboxesRequest {
                label_selector: "a,,b".into(),
                ..Default::default()
            },
            "label_selector:",
        ),
        (
            pb::ListSandboxesRequest {
                states: vec![0],
                ..Default::default()
            },
            "states:",
        ),
        (
            pb::ListSandboxesRequest {
                states: vec![99],
                ..Default::default()
            },
            "states:",
        ),
    ];
    for (request, prefix) in list_cases {
        let status = client.list_sandboxes(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(status.message().starts_with(prefix), "{}", status.message());
    }

    let status = client
        .watch_sandboxes(pb::WatchSandboxesRequest {
            after_revision: -1,
            sandbox_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let sandbox = client
        .create_sandbox(pb::CreateSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    let update_cases: Vec<(pb::UpdateSandboxRequest, &str)> = vec![
        (
            pb::UpdateSandboxRequest {
                sandbox_id: sandbox.id.clone(),
                ..Default::default()
            },
            "update_mask:",
        ),
        (
            pb::UpdateSandboxRequest {
                sandbox_id: sandbox.id.clone(),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
                ..Default::default()
            },
            "update_mask:",
        ),
        (
            pb::UpdateSandboxRequest {
                sandbox_id: sandbox.id.clone(),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["timeout".into()],
                }),
                ..Default::default()
            },
            "timeout:",
        ),
        (
            pb::UpdateSandboxRequest {
                sandbox_id: sandbox.id.clone(),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["labels".into()],
                }),
                labels: [("bad key".to_string(), String::new())].into(),
                ..Default::default()
            },
            "labels:",
        ),
    ];
    for (request, prefix) in update_cases {
        let status = client.update_sandbox(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(status.message().starts_with(prefix), "{}", status.message());
    }
    let unchanged = client
        .get_sandbox(pb::GetSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(unchanged, sandbox, "refused updates changed nothing");
}

/// Stands in for any request whose first two fields are strings (or
/// messages), with bytes that are not what those fields must hold.
#[derive(Clone, PartialEq, prost::Message)]
struct Undecodable {
    #[prost(bytes = "vec", tag = "1")]
    first: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    second: Vec<u8>,
}

#[tokio::test]
async fn messages_that_do_not_decode_are_invalid_argument_on_every_service() {
    use tonic::codegen::http::uri::PathAndQuery;
    let server = TestServer::start().await;
    // Not UTF-8 in a string field; not a message in a message field.
    let not_utf8 = Undecodable {
        first: vec![0xff, 0xfe, b'x'],
        second: vec![0xc3, 0x28],
    };
    let not_a_message = Undecodable {
        first: vec![0xff, 0xff, 0xff],
        second: Vec::new(),
    };
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    let unary = [
        "/paddock.v1.SandboxService/GetSandbox",
        "/paddock.v1.SandboxService/CreateSandbox",
        "/paddock.v1.SandboxService/DeleteSandbox",
        "/paddock.v1.ExecService/RunCommand",
        "/paddock.v1.ExecService/GetCommand",
        "/paddock.v1.FileService/Stat",
        "/paddock.v1.FileService/ReadFile",
        "/paddock.v1.FileService/Grep",
    ];
    for path in unary {
        grpc.ready().await.unwrap();
        let answer = grpc
            .unary(
                tonic::Request::new(not_utf8.clone()),
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<Undecodable, Undecodable>::default(),
            )
            .await;
        let status = answer.expect_err(path);
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{path}: {}",
            status.message()
        );
        assert!(
            status.message().contains("not valid protobuf"),
            "{path}: {}",
            status.message()
        );
    }
    let streams = [
        "/paddock.v1.ExecService/Exec",
        "/paddock.v1.FileService/Upload",
        "/paddock.v1.FileService/UploadArchive",
    ];
    for path in streams {
        grpc.ready().await.unwrap();
        let answer = grpc
            .streaming(
                tonic::Request::new(futures::stream::iter([not_a_message.clone()])),
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<Undecodable, Undecodable>::default(),
            )
            .await;
        let status = match answer {
            Ok(mut responses) => responses.get_mut().message().await.expect_err(path),
            Err(status) => status,
        };
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{path}: {}",
            status.message()
        );
    }
    // The server is still well and answers proper requests.
    let listed = server
        .sandboxes()
        .await
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sandboxes.is_empty());
}
