//! Every field's rule, with the field named in the error.

use super::*;

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
            "a volume that was never made",
            pb::CreateSandboxRequest {
                volumes: vec![pb::Volume {
                    name: "cache".into(),
                    mount_path: "/cache".into(),
                    read_only: false,
                }],
                ..Default::default()
            },
            Code::NotFound,
            "volumes[0].name: there is no volume named \"cache\"",
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
