//! Who commands run as: the image's USER on Docker, `CommandSpec.user` by
//! name or uid, files that belong to the sandbox's user, and the process
//! provider's plain refusal to switch users.

use super::*;
use paddock::pb::file_service_client::FileServiceClient;

/// Runs `line` as `user` through an Exec stream; its output and exit code,
/// or the status the stream was refused with.
async fn run_as(
    client: &mut Exec,
    sandbox_id: &str,
    user: &str,
    line: &str,
) -> Result<(String, i32), tonic::Status> {
    let (requests, rx) = mpsc::channel(4);
    requests
        .send(pb::ExecRequest {
            request: Some(Req::Start(pb::ExecStart {
                sandbox_id: sandbox_id.into(),
                spec: Some(pb::CommandSpec {
                    user: user.into(),
                    ..shell_spec(line)
                }),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    let mut responses = client.exec(ReceiverStream::new(rx)).await?.into_inner();
    let mut output = String::new();
    loop {
        match responses.message().await?.and_then(|r| r.response) {
            Some(Resp::Output(chunk)) => output.push_str(&String::from_utf8_lossy(&chunk.data)),
            Some(Resp::Exited(exited)) => return Ok((output, exited.exit_code.unwrap_or(-1))),
            Some(_) => {}
            None => panic!("the stream ended without an exit"),
        }
    }
}

#[tokio::test]
async fn docker_runs_commands_as_the_images_user_and_as_any_user_asked_for() {
    if !common::docker::available() {
        return;
    }
    let server = TestServer::for_provider(Provider::Docker).await;
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest {
            image: common::docker::USER_ALICE.into(),
            ..Default::default()
        })
        .await
        .id;
    let mut client = exec_client(&server).await;

    // The image says USER alice: commands run as alice, at home, and the
    // workdir the engine made for root is hers to write in.
    let (who, code) = run_as(
        &mut client,
        &sandbox,
        "",
        "id -u; id -g; echo $HOME $USER; touch made-by-alice && stat -c %u made-by-alice",
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{who}");
    assert_eq!(who, "1000\n1000\n/home/alice alice\n1000\n");

    // By name, by uid, with a group.
    for (user, expected) in [
        ("root", "0 0\n"),
        ("0", "0 0\n"),
        ("alice", "1000 1000\n"),
        ("4242", "4242 0\n"),
        ("1000:0", "1000 0\n"),
    ] {
        let (ids, code) = run_as(&mut client, &sandbox, user, "echo $(id -u) $(id -g)")
            .await
            .unwrap();
        assert_eq!((ids.as_str(), code), (expected, 0), "as {user}");
    }

    // Files written through FileService belong to the sandbox's user.
    FileServiceClient::new(server.channel().await)
        .write_file(pb::WriteFileRequest {
            sandbox_id: sandbox.clone(),
            path: "/home/alice/deep/uploaded.txt".into(),
            content: b"hello".to_vec(),
            create_parents: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let (owners, _) = run_as(
        &mut client,
        &sandbox,
        "",
        "stat -c %u:%g /home/alice/deep /home/alice/deep/uploaded.txt; echo more >> /home/alice/deep/uploaded.txt && echo appended",
    )
    .await
    .unwrap();
    assert_eq!(owners, "1000:1000\n1000:1000\nappended\n");

    // A name the sandbox does not know is the caller's mistake.
    let refused = run_as(&mut client, &sandbox, "mallory", "true")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("no user named \"mallory\""),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn malformed_users_are_refused_before_reaching_the_sandbox() {
    let server = TestServer::start().await;
    let sandbox = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    for user in ["al ice", "a:b:c", "-rf", ":", &"x".repeat(65)] {
        let refused = run_as(&mut client, &sandbox, user, "true")
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{user}: {refused:?}");
        assert!(
            refused.message().starts_with("start.spec.user:"),
            "{}",
            refused.message()
        );
    }
}

#[tokio::test]
async fn the_process_provider_says_it_cannot_switch_users() {
    let server = TestServer::start().await;
    let sandbox = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    // Its commands run as the server's user: asking for that one is fine.
    let (me, code) = run_as(&mut client, &sandbox, "", "id -u").await.unwrap();
    assert_eq!(code, 0);
    let (same, _) = run_as(&mut client, &sandbox, me.trim(), "id -u")
        .await
        .unwrap();
    assert_eq!(same, me);
    // Another is refused: bubblewrap leaves its commands no capabilities,
    // and a server not running as root has none to give.
    let refused = run_as(&mut client, &sandbox, "4242", "id -u")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("leave user empty"),
        "{}",
        refused.message()
    );
}
