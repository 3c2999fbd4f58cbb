//! A graceful shutdown: a unary call in flight finishes, open watch and
//! Exec streams end with UNAVAILABLE saying how to pick up, and the next
//! server finds the command still there to attach to.

use std::time::Duration;

use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use tokio_stream::StreamExt;

use crate::common::TestServer;

fn start(sandbox_id: &str, line: &str) -> pb::ExecRequest {
    pb::ExecRequest {
        request: Some(pb::exec_request::Request::Start(pb::ExecStart {
            sandbox_id: sandbox_id.to_owned(),
            spec: Some(pb::CommandSpec {
                shell: line.to_owned(),
                ..Default::default()
            }),
            on_disconnect: pb::OnDisconnect::KeepRunning as i32,
        })),
    }
}

fn attach(sandbox_id: &str, command_id: &str) -> pb::ExecRequest {
    pb::ExecRequest {
        request: Some(pb::exec_request::Request::Attach(pb::ExecAttach {
            sandbox_id: sandbox_id.to_owned(),
            command_id: command_id.to_owned(),
            after_seq: 0,
        })),
    }
}

#[tokio::test]
async fn streams_end_unavailable_saying_how_to_pick_up_and_unary_calls_finish() {
    let server = TestServer::start().await;
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await;
    let channel = server.channel().await;

    let mut watch = server
        .sandboxes()
        .await
        .watch_sandboxes(pb::WatchSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Read the history up to the sandbox's RUNNING.
    loop {
        let event = watch.message().await.unwrap().unwrap();
        if event.revision == sandbox.revision {
            break;
        }
    }

    let (requests, outbound) = tokio::sync::mpsc::channel(4);
    requests
        .send(start(&sandbox.id, "echo before; sleep 2; echo after"))
        .await
        .unwrap();
    let mut exec = ExecServiceClient::new(channel.clone())
        .exec(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .unwrap()
        .into_inner();
    let command_id = match exec.message().await.unwrap().unwrap().response {
        Some(pb::exec_response::Response::Started(started)) => started.command_id,
        other => panic!("first answer: {other:?}"),
    };

    // A unary call in flight when the shutdown begins.
    let in_flight = {
        let mut client = ExecServiceClient::new(channel.clone());
        let sandbox_id = sandbox.id.clone();
        tokio::spawn(async move {
            client
                .run_command(pb::RunCommandRequest {
                    sandbox_id,
                    spec: Some(pb::CommandSpec {
                        shell: "sleep 1; echo finished".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = server.restart().await;

    let ended = watch
        .message()
        .await
        .expect_err("the watch ends with an error");
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    assert!(
        ended
            .message()
            .contains(&format!("after_revision {}", sandbox.revision)),
        "{ended:?}"
    );
    let ended = loop {
        match exec.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the Exec stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");
    assert!(ended.message().contains(&command_id), "{ended:?}");
    drop(requests);

    let finished = in_flight
        .await
        .unwrap()
        .expect("the call in flight finished");
    assert_eq!(finished.get_ref().stdout, b"finished\n");

    // The next server has the command, run to its end.
    let answers: Vec<pb::ExecResponse> = ExecServiceClient::new(server.channel().await)
        .exec(tokio_stream::iter([attach(&sandbox.id, &command_id)]))
        .await
        .unwrap()
        .into_inner()
        .map(|answer| answer.unwrap())
        .collect()
        .await;
    let mut stdout = Vec::new();
    let mut exit_code = None;
    for answer in answers {
        match answer.response {
            Some(pb::exec_response::Response::Output(output)) => stdout.extend(output.data),
            Some(pb::exec_response::Response::Exited(exited)) => exit_code = exited.exit_code,
            _ => {}
        }
    }
    assert_eq!(stdout, b"before\nafter\n");
    assert_eq!(exit_code, Some(0));
}
