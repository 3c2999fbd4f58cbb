//! Commands outliving their caller: across a server restart, when their
//! agent dies, and keeping an idle sandbox busy.

use super::*;

/// Agents outlive a server restart with their commands, output and exit:
/// a command still running when the server stops is running when the new
/// server asks, and its output and exit are all there when it ends.
async fn detached_output_and_exit_survive_a_server_restart(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    // It ends only once the test creates `go`, after the restart.
    let command = client
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(shell_spec(
                "echo detached; echo oops >&2; while [ ! -e go ]; do sleep 0.05; done; \
                 echo after; exit 3",
            )),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    assert_eq!(command.state, pb::CommandState::Running as i32);

    let server = server.restart().await;
    let mut client = exec_client(&server).await;
    let list = |client: &mut Exec| {
        let mut client = client.clone();
        let id = id.clone();
        async move {
            client
                .list_commands(pb::ListCommandsRequest {
                    sandbox_id: id,
                    states: vec![],
                })
                .await
                .unwrap()
                .into_inner()
                .commands
        }
    };
    let listed = list(&mut client).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].state,
        pb::CommandState::Running as i32,
        "the agent and its command outlived the server: {:?}",
        listed[0]
    );
    // Through the file service: a command would be listed too.
    server.write(&id, "go", b"").await;
    let ended = wait_until_ended(&mut client, &id, &command.id).await;
    assert_eq!(ended.exit_code, Some(3));
    let listed = list(&mut client).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].exit_code, Some(3));
    let mut log = Session::open(
        &mut client,
        Req::Attach(pb::ExecAttach {
            sandbox_id: id.clone(),
            command_id: command.id.clone(),
            after_seq: 0,
        }),
    )
    .await;
    let (output, exited) = log.finish().await;
    let text = String::from_utf8(output).unwrap();
    assert!(
        text.contains("detached\n") && text.contains("oops\n") && text.contains("after\n"),
        "{text:?}"
    );
    assert_eq!(exited.exit_code, Some(3));
}

async fn a_command_whose_agent_died_is_lost_not_running(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    let command = client
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(shell_spec("exec sleep 100")),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    match provider {
        Provider::Process => {
            let agent = agent_pid(&server, &id);
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(agent as i32, libc::SIGKILL) };
            eventually(Duration::from_secs(5), "the agent to die", || async move {
                let stat =
                    std::fs::read_to_string(format!("/proc/{agent}/stat")).unwrap_or_default();
                let dead = stat.is_empty()
                    || stat
                        .rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
                dead.then_some(())
            })
            .await;
        }
        // The agent is the container's PID 1: its death ends the container.
        Provider::Docker | Provider::DockerBridge => {
            assert!(common::docker::docker(&["kill", &format!("paddock-{id}")]))
        }
        Provider::Kubernetes => {
            assert!(common::docker::docker(&[
                "kill",
                &server.pod_container(&id)
            ]))
        }
    }

    let status = client
        .get_command(pb::GetCommandRequest {
            sandbox_id: id.clone(),
            command_id: command.id.clone(),
        })
        .await
        .unwrap_err();
    // The server either cannot reach the agent or has already seen the
    // container stop.
    assert!(
        [Code::Unavailable, Code::FailedPrecondition].contains(&status.code()),
        "{status:?}"
    );

    // Stopping and starting the sandbox brings a new agent, which knows the
    // command but not how it ended.
    let mut sandboxes = server.sandboxes().await;
    sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    sandboxes
        .start_sandbox(pb::StartSandboxRequest {
            sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    let lost = client
        .get_command(pb::GetCommandRequest {
            sandbox_id: id.clone(),
            command_id: command.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    assert_eq!(lost.state, pb::CommandState::Lost as i32);
    assert!(!lost.state_reason.is_empty());
}

async fn a_running_detached_command_keeps_its_sandbox_from_idling_out(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let mut sandboxes = server.sandboxes().await;
    let id = sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            idle_timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap()
        .id;
    let mut client = exec_client(&server).await;
    let build = client
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.clone(),
            // It runs until the test lets it end, however slow the machine.
            spec: Some(shell_spec("while [ ! -e done ]; do sleep 0.05; done")),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    // Long past the idle timeout, with the reaper looking every 100 ms.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let during = sandboxes
        .get_sandbox(pb::GetSandboxRequest {
            sandbox_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(
        during.state,
        pb::SandboxState::Running as i32,
        "busy, not idle"
    );
    server.write(&id, "done", b"").await;
    let ended = wait_until_ended(&mut client, &id, &build.id).await;
    assert_eq!(ended.exit_code, Some(0), "the command ran to its end");
    eventually(Duration::from_secs(10), "the idle sandbox to stop", || {
        let mut sandboxes = sandboxes.clone();
        let id = id.clone();
        async move {
            let state = sandboxes
                .get_sandbox(pb::GetSandboxRequest { sandbox_id: id })
                .await
                .unwrap()
                .into_inner()
                .sandbox
                .unwrap()
                .state;
            (state == pb::SandboxState::Stopped as i32).then_some(())
        }
    })
    .await;
}

on_every_provider!(
    detached_output_and_exit_survive_a_server_restart,
    a_command_whose_agent_died_is_lost_not_running,
    a_running_detached_command_keeps_its_sandbox_from_idling_out,
);
