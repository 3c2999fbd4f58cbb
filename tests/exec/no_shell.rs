//! An image with no shell at all: the agent needs nothing from the image.

use super::*;

/// The exec checks above that need no shell, in an image that has none:
/// the agent needs nothing from the image.
#[tokio::test]
async fn an_image_with_no_shell_passes_the_exec_checks() {
    if !common::docker::available() {
        return;
    }
    let server = TestServer::for_provider(Provider::Docker).await;
    let id = server
        .running_sandbox(pb::CreateSandboxRequest {
            image: common::docker::NO_SHELL.into(),
            ..Default::default()
        })
        .await
        .id;
    let mut client = exec_client(&server).await;
    let argv = |args: &[&str]| pb::CommandSpec {
        command: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };

    // A terminal: cat echoes what is typed, sees a resize, ends at ^D.
    let mut cat = Session::start(
        &mut client,
        &id,
        pb::CommandSpec {
            tty: true,
            ..argv(&["cat"])
        },
    )
    .await;
    cat.send(Req::Stdin(Bytes::from_static(b"typed\n"))).await;
    cat.read_until("typed\r\ntyped\r\n").await;
    cat.send(Req::Resize(pb::Resize {
        rows: 40,
        cols: 120,
    }))
    .await;
    cat.send(Req::Stdin(Bytes::from_static(&[4]))).await;
    let (_, exited) = cat.finish().await;
    assert_eq!(exited.exit_code, Some(0));

    // Stdin in, stdout back, byte for byte.
    let payload: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut echo = Session::start(&mut client, &id, argv(&["cat"])).await;
    for chunk in payload.chunks(1 << 20) {
        echo.send(Req::Stdin(Bytes::copy_from_slice(chunk))).await;
    }
    echo.send(Req::CloseStdin(pb::CloseStdin {})).await;
    let (output, exited) = echo.finish().await;
    assert_eq!(exited.exit_code, Some(0));
    assert!(output == payload, "8 MiB through cat came back changed");

    // A shell line needs a shell: refused, saying which.
    let refused = client
        .run_command(pb::RunCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(pb::CommandSpec {
                shell: "echo hi".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("/bin/sh"),
        "{}",
        refused.message()
    );

    // Stdout and stderr apart, with the exit code.
    let ran = client
        .run_command(pb::RunCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(pb::CommandSpec {
                command: vec!["ls".into(), "/bin".into(), "/nonexistent".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(ran.exit_code, Some(0));
    assert!(String::from_utf8_lossy(&ran.stdout).contains("sleep"));
    assert!(String::from_utf8_lossy(&ran.stderr).contains("nonexistent"));

    // A timeout, a signal, and KillProcesses.
    let timed = client
        .run_command(pb::RunCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(pb::CommandSpec {
                command: vec!["sleep".into(), "30".into()],
                timeout: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 300_000_000,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(timed.timed_out);
    let sleeper = |client: &mut Exec| {
        let mut client = client.clone();
        let id = id.clone();
        async move {
            client
                .start_command(pb::StartCommandRequest {
                    sandbox_id: id,
                    spec: Some(pb::CommandSpec {
                        command: vec!["sleep".into(), "600".into()],
                        ..Default::default()
                    }),
                })
                .await
                .unwrap()
                .into_inner()
                .command
                .unwrap()
                .id
        }
    };
    let signalled = sleeper(&mut client).await;
    client
        .signal_command(pb::SignalCommandRequest {
            sandbox_id: id.clone(),
            command_id: signalled.clone(),
            signal: "SIGKILL".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        wait_until_ended(&mut client, &id, &signalled).await.signal,
        "SIGKILL"
    );
    let (first, second) = (sleeper(&mut client).await, sleeper(&mut client).await);
    let killed = client
        .kill_processes(pb::KillProcessesRequest {
            sandbox_id: id.clone(),
            signal: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(killed.signalled, 2);
    for command in [first, second] {
        assert_eq!(
            wait_until_ended(&mut client, &id, &command).await.signal,
            "SIGKILL"
        );
    }

    // Detached output, read back by attaching afterwards.
    let detached = client
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(argv(&["echo", "detached"])),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    wait_until_ended(&mut client, &id, &detached.id).await;
    let mut log = Session::open(
        &mut client,
        Req::Attach(pb::ExecAttach {
            sandbox_id: id.clone(),
            command_id: detached.id.clone(),
            after_seq: 0,
        }),
    )
    .await;
    let (output, _) = log.finish().await;
    assert_eq!(output, b"detached\n");
}
