//! Many commands at once, the limits on them, and the checks on every
//! request.

use super::*;

async fn two_hundred_concurrent_run_commands_succeed(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let client = exec_client(&server).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut client = client.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            client
                .run_command(pb::RunCommandRequest {
                    sandbox_id: id,
                    spec: Some(pb::CommandSpec {
                        command: vec!["echo".into(), i.to_string()],
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map(|r| (i, r.into_inner()))
        }));
    }
    for task in tasks {
        let (i, ran) = task.await.unwrap().expect("every RunCommand succeeds");
        assert_eq!(ran.stdout, format!("{i}\n").into_bytes());
        assert_eq!(ran.exit_code, Some(0));
    }
}

async fn limits_answer_resource_exhausted_instead_of_hanging(provider: Provider) {
    let server = TestServer::for_provider_with(provider, |args| {
        args.max_commands = Some(2);
        args.max_commands_per_sandbox = Some(3);
    })
    .await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;

    // The server's limit counts open Exec streams and RunCommand calls.
    let _a = Session::start(&mut client, &id, shell_spec("sleep 30")).await;
    let _b = Session::start(&mut client, &id, shell_spec("sleep 30")).await;
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        client.run_command(pb::RunCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(pb::CommandSpec {
                command: vec!["true".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
    .await
    .expect("an answer, not a hang")
    .unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );

    // The sandbox's limit counts every running command, detached ones too.
    client
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(shell_spec("sleep 30")),
        })
        .await
        .unwrap();
    let status = client
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(shell_spec("sleep 30")),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );

    let killed = client
        .kill_processes(pb::KillProcessesRequest {
            sandbox_id: id.clone(),
            signal: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(killed.signalled, 3);
}

async fn exec_checks_its_input_and_the_sandbox(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    let runner = client.clone();
    let run = |request: pb::RunCommandRequest| {
        let mut client = runner.clone();
        async move { client.run_command(request).await.unwrap_err() }
    };

    for (request, code, prefix) in [
        (
            pb::RunCommandRequest {
                sandbox_id: id.clone(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "spec:",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: id.clone(),
                spec: Some(Default::default()),
                ..Default::default()
            },
            Code::InvalidArgument,
            "spec.command:",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: id.clone(),
                spec: Some(pb::CommandSpec {
                    command: vec!["true".into()],
                    tty: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::InvalidArgument,
            "spec.tty:",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: id.clone(),
                spec: Some(pb::CommandSpec {
                    command: vec!["true".into()],
                    shell: "true".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::InvalidArgument,
            "spec.shell:",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: id.clone(),
                spec: Some(pb::CommandSpec {
                    command: vec!["true".into()],
                    ..Default::default()
                }),
                max_output_bytes: 64 << 20,
                ..Default::default()
            },
            Code::InvalidArgument,
            "max_output_bytes:",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: id.clone(),
                spec: Some(pb::CommandSpec {
                    command: vec!["true".into()],
                    workdir: "relative".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::InvalidArgument,
            "spec.workdir:",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: id.clone(),
                spec: Some(pb::CommandSpec {
                    command: vec!["/no/such/program".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::FailedPrecondition,
            "cannot start",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: "sbx_0123456789abcdef0123456789abcdef".into(),
                spec: Some(pb::CommandSpec {
                    command: vec!["true".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            Code::NotFound,
            "no sandbox",
        ),
    ] {
        let status = run(request).await;
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().starts_with(prefix), "{}", status.message());
    }

    let status = client
        .get_command(pb::GetCommandRequest {
            sandbox_id: id.clone(),
            command_id: "cmd_0123456789abcdef0123456789abcdef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .signal_command(pb::SignalCommandRequest {
            sandbox_id: id.clone(),
            command_id: "cmd_0123456789abcdef0123456789abcdef".into(),
            signal: "SIGWHAT".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // A malformed message mid-stream ends the stream with the reason.
    let mut session = Session::start(&mut client, &id, shell_spec("sleep 30")).await;
    session
        .send(Req::Resize(pb::Resize { rows: 0, cols: 80 }))
        .await;
    let status = tokio::time::timeout(Duration::from_secs(5), session.responses.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("resize.rows:"),
        "{}",
        status.message()
    );

    server
        .sandboxes()
        .await
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    let status = run(pb::RunCommandRequest {
        sandbox_id: id.clone(),
        spec: Some(pb::CommandSpec {
            command: vec!["true".into()],
            ..Default::default()
        }),
        ..Default::default()
    })
    .await;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("STOPPED"), "{}", status.message());
}

on_every_provider!(
    two_hundred_concurrent_run_commands_succeed,
    limits_answer_resource_exhausted_instead_of_hanging,
    exec_checks_its_input_and_the_sandbox,
);
