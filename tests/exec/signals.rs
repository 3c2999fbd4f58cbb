//! Signals, timeouts and disconnects end commands and say how.

use super::*;

async fn signals_and_timeouts_end_commands_and_say_so(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;

    let mut sleeper = Session::start(
        &mut client,
        &id,
        pb::CommandSpec {
            command: vec!["sleep".into(), "100".into()],
            ..Default::default()
        },
    )
    .await;
    sleeper
        .send(Req::Signal(pb::Signal {
            name: "SIGINT".into(),
        }))
        .await;
    let (_, exited) = sleeper.finish().await;
    assert_eq!(exited.signal, "SIGINT");
    assert_eq!(exited.exit_code, None);

    let started = Instant::now();
    let ran = client
        .run_command(pb::RunCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(pb::CommandSpec {
                command: vec!["sleep".into(), "100".into()],
                timeout: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ran.timed_out);
    assert_eq!(ran.signal, "SIGKILL");
    // Ended by its 1 s timeout, not early and not by the sleep's own end
    // (100 s): the agent's measure of its life is the first, the wall clock
    // here (on a busy machine) the second.
    let lived = ran
        .duration
        .map(|d| Duration::new(d.seconds as u64, d.nanos as u32));
    assert!(lived >= Some(Duration::from_secs(1)), "{lived:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );

    // SignalCommand reaches the whole process group, grandchildren included.
    let detached = client
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(shell_spec("sleep 100 & sleep 100; wait")),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    client
        .signal_command(pb::SignalCommandRequest {
            sandbox_id: id.clone(),
            command_id: detached.id.clone(),
            signal: "TERM".into(),
        })
        .await
        .unwrap();
    let ended = wait_until_ended(&mut client, &id, &detached.id).await;
    assert_eq!(ended.signal, "SIGTERM");
}

async fn on_disconnect_kill_ends_the_command_with_its_stream(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    let session = Session::open(
        &mut client,
        Req::Start(pb::ExecStart {
            sandbox_id: id.clone(),
            spec: Some(shell_spec("sleep 100")),
            on_disconnect: pb::OnDisconnect::Kill as i32,
        }),
    )
    .await;
    let command_id = session.command_id.clone();
    drop(session);
    let ended = wait_until_ended(&mut client, &id, &command_id).await;
    assert_eq!(ended.signal, "SIGKILL");

    // The default keeps the command running after its stream ends.
    let session = Session::start(&mut client, &id, shell_spec("sleep 100")).await;
    let command_id = session.command_id.clone();
    drop(session);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = client
        .get_command(pb::GetCommandRequest {
            sandbox_id: id.clone(),
            command_id,
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    assert_eq!(still.state, pb::CommandState::Running as i32);
}

on_every_provider!(
    signals_and_timeouts_end_commands_and_say_so,
    on_disconnect_kill_ends_the_command_with_its_stream,
);
