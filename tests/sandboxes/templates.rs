//! TemplateService on the process provider: templates made, versioned,
//! listed and deleted; sandboxes made from them (the request's fields
//! winning, environments merged, a setup command run once); and the
//! requests that cannot be met. tests/docker/templates.rs builds and
//! captures images.

use super::*;
use paddock::pb::template_service_client::TemplateServiceClient;
use tonic::transport::Channel;

async fn templates(server: &TestServer) -> TemplateServiceClient<Channel> {
    TemplateServiceClient::new(server.channel().await)
}

fn spec(env: &[(&str, &str)], setup: &str) -> pb::TemplateSpec {
    pb::TemplateSpec {
        env: labels(env),
        workdir: "/project".into(),
        network: pb::NetworkMode::None as i32,
        setup_command: setup.into(),
        ..Default::default()
    }
}

async fn make(
    client: &mut TemplateServiceClient<Channel>,
    name: &str,
    spec: pb::TemplateSpec,
) -> pb::Template {
    client
        .create_template(pb::CreateTemplateRequest {
            name: name.into(),
            spec: Some(spec),
        })
        .await
        .expect("CreateTemplate succeeds")
        .into_inner()
        .template
        .unwrap()
}

fn from_template(template: &str) -> pb::CreateSandboxRequest {
    pb::CreateSandboxRequest {
        template: template.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn sandboxes_are_made_from_templates_the_request_winning() {
    let server = TestServer::start().await;
    let mut client = templates(&server).await;
    let made = make(
        &mut client,
        "data-1.0",
        spec(
            &[("STAGE", "template"), ("LANG", "C.UTF-8")],
            "echo set-up >> /project/setup.log",
        ),
    )
    .await;
    assert_eq!(made.version, 1);
    assert!(made.id.starts_with("tpl_"), "{made:?}");
    assert_eq!(made.source, "create");
    assert_eq!(made.env_keys, ["LANG", "STAGE"]);
    assert!(
        made.spec.as_ref().unwrap().env.is_empty(),
        "environment values are never returned"
    );

    let mut request = from_template("data-1.0");
    request.env = labels(&[("STAGE", "request")]);
    let sandbox = server.running_sandbox(request).await;
    assert_eq!(sandbox.template, "data-1.0@1");
    assert_eq!(sandbox.workdir, "/project");
    assert_eq!(sandbox.network, pb::NetworkMode::None as i32);
    assert_eq!(
        server
            .shell(&sandbox.id, "echo $STAGE $LANG; pwd; cat setup.log")
            .await,
        "request C.UTF-8\n/project\nset-up\n"
    );
    // The setup ran once: a stop and a start do not run it again.
    let mut sandboxes = server.sandboxes().await;
    sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();
    sandboxes
        .start_sandbox(pb::StartSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(server.shell(&sandbox.id, "cat setup.log").await, "set-up\n");

    // A new version; the first stays reachable by its number.
    let updated = client
        .update_template(pb::UpdateTemplateRequest {
            name: "data-1.0".into(),
            spec: Some(spec(&[("STAGE", "second")], "")),
        })
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    assert_eq!((updated.version, updated.source.as_str()), (2, "update"));
    let second = server.running_sandbox(from_template("data-1.0")).await;
    assert_eq!(second.template, "data-1.0@2");
    assert_eq!(server.shell(&second.id, "echo $STAGE").await, "second\n");
    let first = server.running_sandbox(from_template("data-1.0@1")).await;
    assert_eq!(server.shell(&first.id, "echo $STAGE").await, "template\n");
    let got = client
        .get_template(pb::GetTemplateRequest {
            name: "data-1.0@1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .template
        .unwrap();
    assert_eq!(got.version, 1);
    let listed = client
        .list_templates(pb::ListTemplatesRequest {})
        .await
        .unwrap()
        .into_inner()
        .templates;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, 2);

    // In use: refused, naming the sandboxes, unless forced.
    let refused = client
        .delete_template(pb::DeleteTemplateRequest {
            name: "data-1.0".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    for id in [&sandbox.id, &second.id, &first.id] {
        assert!(
            refused.message().contains(id.as_str()),
            "{}",
            refused.message()
        );
    }
    client
        .delete_template(pb::DeleteTemplateRequest {
            name: "data-1.0".into(),
            force: true,
        })
        .await
        .expect("a forced delete succeeds");
    let gone = server
        .sandboxes()
        .await
        .create_sandbox(from_template("data-1.0"))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    assert!(
        gone.message().starts_with("template:"),
        "{}",
        gone.message()
    );
    // Its sandboxes go on.
    assert_eq!(server.shell(&first.id, "echo $STAGE").await, "template\n");
}

#[tokio::test]
async fn a_failing_setup_leaves_the_sandbox_failed_with_its_output() {
    let server = TestServer::start().await;
    let mut client = templates(&server).await;
    make(
        &mut client,
        "broken",
        spec(&[], "echo installing; echo no such package >&2; exit 7"),
    )
    .await;
    let sandbox = server
        .sandboxes()
        .await
        .create_sandbox(from_template("broken"))
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(sandbox.state, pb::SandboxState::Failed as i32);
    assert!(
        sandbox.state_reason.contains("setup command exited with 7")
            && sandbox.state_reason.contains("installing")
            && sandbox.state_reason.contains("no such package"),
        "{}",
        sandbox.state_reason
    );
}

#[tokio::test]
async fn template_requests_that_cannot_be_met_are_refused_with_reasons() {
    let server = TestServer::start().await;
    let mut client = templates(&server).await;
    make(&mut client, "taken", pb::TemplateSpec::default()).await;
    let cases = [
        (
            "Upper",
            pb::TemplateSpec::default(),
            Code::InvalidArgument,
            "name:",
        ),
        (
            "taken",
            pb::TemplateSpec::default(),
            Code::AlreadyExists,
            "exists already",
        ),
        (
            "bad-image",
            pb::TemplateSpec {
                image: "not an image".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "spec.image:",
        ),
        (
            "bad-provider",
            pb::TemplateSpec {
                provider: "nowhere".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "unknown provider",
        ),
        (
            "bad-env",
            pb::TemplateSpec {
                env: labels(&[("1X", "y")]),
                ..Default::default()
            },
            Code::InvalidArgument,
            "spec.env",
        ),
    ];
    for (name, spec, code, says) in cases {
        let refused = client
            .create_template(pb::CreateTemplateRequest {
                name: name.into(),
                spec: Some(spec),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{name}: {refused:?}");
        assert!(
            refused.message().contains(says),
            "{name}: {}",
            refused.message()
        );
    }
    for (reference, code) in [
        ("absent", Code::NotFound),
        ("taken@9", Code::NotFound),
        ("taken@0", Code::InvalidArgument),
        ("taken@x", Code::InvalidArgument),
    ] {
        let refused = client
            .get_template(pb::GetTemplateRequest {
                name: reference.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "{reference}: {refused:?}");
        let refused = server
            .sandboxes()
            .await
            .create_sandbox(from_template(reference))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), code, "create from {reference}: {refused:?}");
    }
    let both = server
        .sandboxes()
        .await
        .create_sandbox(pb::CreateSandboxRequest {
            template: "taken".into(),
            image: "busybox".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(both.code(), Code::InvalidArgument, "{both:?}");
    // Builds and snapshots need an engine: the process provider says so.
    let sandbox = server.running_sandbox(Default::default()).await;
    let refused = server
        .sandboxes()
        .await
        .snapshot_sandbox(pb::SnapshotSandboxRequest {
            sandbox_id: sandbox.id.clone(),
            template: "snap".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("snapshots"),
        "{}",
        refused.message()
    );
    let missing = client
        .delete_template(pb::DeleteTemplateRequest {
            name: "absent".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
}
