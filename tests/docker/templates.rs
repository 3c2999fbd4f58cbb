//! Templates on the real engine: built from a Dockerfile FROM the local
//! test image (through BuildTemplate and through `paddock template build`),
//! a failing step reported with its output, snapshots of a sandbox's
//! files, and a deleted template's images gone.

use super::*;
use paddock::pb::build_template_request::Request as Up;
use paddock::pb::build_template_response::Response as Down;
use paddock::pb::template_service_client::TemplateServiceClient;

/// A build context: a tar archive of `files` (path, content).
fn context(files: &[(&str, &str)]) -> Vec<u8> {
    let mut archive = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        archive
            .append_data(&mut header, path, content.as_bytes())
            .unwrap();
    }
    archive.into_inner().unwrap()
}

/// Builds template `name` from `files`: the log lines, and the template or
/// the status that ended the build.
async fn build(
    server: &TestServer,
    name: &str,
    files: &[(&str, &str)],
) -> (Vec<String>, Result<pb::Template, tonic::Status>) {
    let archive = context(files);
    let mut requests = vec![pb::BuildTemplateRequest {
        request: Some(Up::Header(pb::BuildTemplateHeader {
            name: name.into(),
            ..Default::default()
        })),
    }];
    // Small chunks, so that the context crosses several messages.
    requests.extend(archive.chunks(700).map(|chunk| pb::BuildTemplateRequest {
        request: Some(Up::Context(chunk.to_vec().into())),
    }));
    let mut answers = TemplateServiceClient::new(server.channel().await)
        .build_template(futures::stream::iter(requests))
        .await
        .expect("the build starts")
        .into_inner();
    let mut lines = Vec::new();
    loop {
        match answers.message().await {
            Ok(Some(pb::BuildTemplateResponse {
                response: Some(Down::Log(line)),
            })) => lines.push(line),
            Ok(Some(pb::BuildTemplateResponse {
                response: Some(Down::Template(template)),
            })) => return (lines, Ok(template)),
            Ok(other) => panic!("unexpected answer {other:?}"),
            Err(status) => return (lines, Err(status)),
        }
    }
}

fn image_exists(image: &str) -> bool {
    docker::docker(&["image", "inspect", image])
}

#[tokio::test]
async fn templates_are_built_from_dockerfiles_and_name_their_failing_step() {
    let Some(server) = docker_server().await else {
        return;
    };
    let dockerfile = format!(
        "FROM {BUSYBOX}\nCOPY greeting.txt /opt/greeting.txt\n\
         ENV GREETING=hello-from-the-template\nRUN echo built-here > /opt/built\n"
    );
    let (lines, built) = build(
        &server,
        "greeter",
        &[
            ("Dockerfile", &dockerfile),
            ("greeting.txt", "hello from the context\n"),
        ],
    )
    .await;
    let template = built.expect("the build succeeds");
    assert!(
        lines.iter().any(|line| line.starts_with("Step ")
            && line.ends_with(": RUN echo built-here > /opt/built")),
        "{lines:?}"
    );
    assert_eq!((template.version, template.source.as_str()), (1, "build"));
    let image = template.spec.as_ref().unwrap().image.clone();
    assert_eq!(image, format!("paddock-template/{}:1", template.id));
    assert!(image_exists(&image));

    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest {
            template: "greeter".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(sandbox.template, "greeter@1");
    assert_eq!(sandbox.image, image);
    assert_eq!(
        server
            .shell(
                &sandbox.id,
                "cat /opt/greeting.txt /opt/built; echo $GREETING"
            )
            .await,
        "hello from the context\nbuilt-here\nhello-from-the-template\n"
    );

    // A failing RUN: its step and its output.
    let (lines, failed) = build(
        &server,
        "greeter",
        &[(
            "Dockerfile",
            &format!("FROM {BUSYBOX}\nRUN echo about-to-fail && exit 3\n"),
        )],
    )
    .await;
    let status = failed.expect_err("the build fails");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let message = status.message();
    assert!(
        message.contains(": RUN echo about-to-fail && exit 3")
            && message.contains("at Step 2/")
            && message.contains("non-zero code: 3")
            && message.contains("about-to-fail"),
        "{message}"
    );
    assert!(
        lines.iter().any(|line| line == "about-to-fail"),
        "{lines:?}"
    );

    // The command line: a directory, a Dockerfile named with -f; a new
    // version of the same template.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Containerfile"),
        format!("FROM {BUSYBOX}\nCOPY note /opt/note\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("note"), "from the cli\n").unwrap();
    // Awaited, not waited for: the server runs on this test's runtime.
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(["template", "build", "--server"])
        .arg(format!("http://{}", server.addr))
        .arg("-f")
        .arg(dir.path().join("Containerfile"))
        .args(["-t", "greeter"])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(printed.contains(": COPY note /opt/note"), "{printed}");
    assert!(printed.contains("Built template greeter@2"), "{printed}");
    let second = server
        .running_sandbox(pb::CreateSandboxRequest {
            template: "greeter".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        server.shell(&second.id, "cat /opt/note").await,
        "from the cli\n"
    );

    // Deleted with its sandboxes gone: its images go too.
    for id in [&sandbox.id, &second.id] {
        server
            .sandboxes()
            .await
            .delete_sandbox(pb::DeleteSandboxRequest {
                sandbox_id: id.clone(),
            })
            .await
            .unwrap();
    }
    TemplateServiceClient::new(server.channel().await)
        .delete_template(pb::DeleteTemplateRequest {
            name: "greeter".into(),
            force: false,
        })
        .await
        .expect("a template nothing uses is deleted");
    assert!(!image_exists(&image));
    assert!(!image_exists(&format!(
        "paddock-template/{}:2",
        template.id
    )));
}

#[tokio::test]
async fn a_snapshot_gives_new_sandboxes_the_same_files() {
    let Some(server) = docker_server().await else {
        return;
    };
    let original = server.running_sandbox(Default::default()).await;
    server
        .shell(
            &original.id,
            "echo work > /workspace/result.txt && mkdir -p /opt/tool && echo v1 > /opt/tool/version",
        )
        .await;
    let mut sandboxes = server.sandboxes().await;
    let snapshot = sandboxes
        .snapshot_sandbox(pb::SnapshotSandboxRequest {
            sandbox_id: original.id.clone(),
            template: "captured".into(),
        })
        .await
        .expect("the snapshot succeeds")
        .into_inner();
    assert_eq!(
        (snapshot.template.as_str(), snapshot.version),
        ("captured", 1)
    );
    assert!(image_exists(&snapshot.image));
    // The original goes on as it was.
    assert_eq!(server.shell(&original.id, "echo still").await, "still\n");

    let copy = server
        .running_sandbox(pb::CreateSandboxRequest {
            template: "captured".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        server
            .shell(&copy.id, "cat /workspace/result.txt /opt/tool/version")
            .await,
        "work\nv1\n"
    );
    // A second snapshot is a new version; the first stays.
    server.shell(&copy.id, "echo v2 > /opt/tool/version").await;
    let again = sandboxes
        .snapshot_sandbox(pb::SnapshotSandboxRequest {
            sandbox_id: copy.id.clone(),
            template: "captured".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.version, 2);
    let older = server
        .running_sandbox(pb::CreateSandboxRequest {
            template: "captured@1".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        server.shell(&older.id, "cat /opt/tool/version").await,
        "v1\n"
    );
    let newer = server
        .running_sandbox(pb::CreateSandboxRequest {
            template: "captured".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        server.shell(&newer.id, "cat /opt/tool/version").await,
        "v2\n"
    );
    // The snapshot's image does not carry the captured sandbox's identity.
    let labels = docker_output(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"io.paddock.sandbox-id\"}}",
        &format!("paddock-{}", newer.id),
    ]);
    assert_eq!(labels.trim(), newer.id);

    let refused = TemplateServiceClient::new(server.channel().await)
        .delete_template(pb::DeleteTemplateRequest {
            name: "captured".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
}
