//! Output and input as streams: stdout and stderr kept apart, large
//! payloads both ways with bounded memory, and reattaching to a command's
//! retained log.

use super::*;

async fn run_command_keeps_stdout_and_stderr_apart_and_caps_them(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    let ran = client
        .run_command(pb::RunCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(pb::CommandSpec {
                shell: "echo out; echo err >&2; cat; exit 7".into(),
                ..Default::default()
            }),
            stdin: b"from stdin\n".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ran.stdout, b"out\nfrom stdin\n");
    assert_eq!(ran.stderr, b"err\n");
    assert_eq!(ran.exit_code, Some(7));
    assert!(!ran.stdout_truncated && !ran.stderr_truncated);

    let capped = client
        .run_command(pb::RunCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(pb::CommandSpec {
                command: vec![
                    "head".into(),
                    "-c".into(),
                    "5000".into(),
                    "/dev/zero".into(),
                ],
                ..Default::default()
            }),
            max_output_bytes: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capped.stdout.len(), 1000);
    assert!(capped.stdout_truncated);

    // The whole output stays in the log.
    let mut log = Session::open(
        &mut client,
        Req::Attach(pb::ExecAttach {
            sandbox_id: id,
            command_id: capped.command_id,
            after_seq: 0,
        }),
    )
    .await;
    let (output, exited) = log.finish().await;
    assert_eq!(output.len(), 5000);
    assert_eq!(exited.exit_code, Some(0));
}

async fn a_hundred_mib_through_stdin_comes_back_intact(provider: Provider) {
    const TOTAL: usize = 100 << 20;
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    let mut cat = Session::start(
        &mut client,
        &id,
        pb::CommandSpec {
            command: vec!["cat".into()],
            ..Default::default()
        },
    )
    .await;
    let requests = cat.requests.clone();
    let writer = tokio::spawn(async move {
        let mut sent = Sha256::new();
        let mut chunk = vec![0u8; 1 << 20];
        for i in 0..(TOTAL >> 20) {
            for (j, byte) in chunk.iter_mut().enumerate() {
                *byte = (i * 31 + j * 7) as u8;
            }
            sent.update(&chunk);
            requests
                .send(pb::ExecRequest {
                    request: Some(Req::Stdin(chunk.clone().into())),
                })
                .await
                .unwrap();
        }
        requests
            .send(pb::ExecRequest {
                request: Some(Req::CloseStdin(pb::CloseStdin {})),
            })
            .await
            .unwrap();
        sent.finalize()
    });
    let mut received = Sha256::new();
    let mut count = 0;
    let exited = loop {
        match cat.next().await {
            Some(Resp::Output(output)) => {
                count += output.data.len();
                received.update(&output.data);
            }
            Some(Resp::Exited(exited)) => break exited,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(count, TOTAL);
    assert_eq!(received.finalize(), writer.await.unwrap());
    assert_eq!(exited.exit_code, Some(0));
}

/// The peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[tokio::test]
async fn a_gib_of_stdout_arrives_in_full_with_bounded_memory_despite_a_pausing_reader() {
    const TOTAL: u64 = 1 << 30;
    const AGENT_RSS_BOUND: u64 = 64 << 20;
    const SERVER_RSS_BOUND: u64 = 80 << 20;
    // The server runs as its own process, so that its memory is its own.
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(data.path());
    let id = server
        .client()
        .await
        .create_sandbox(pb::CreateSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap()
        .id;
    let mut client = ExecServiceClient::new(server.channel().await);
    let mut stream = Session::start(
        &mut client,
        &id,
        pb::CommandSpec {
            command: vec![
                "head".into(),
                "-c".into(),
                TOTAL.to_string(),
                "/dev/zero".into(),
            ],
            ..Default::default()
        },
    )
    .await;
    let mut received = 0u64;
    let mut last_seq = 0;
    let mut paused = false;
    let exited = loop {
        match stream.next().await {
            Some(Resp::Output(output)) => {
                assert_eq!(output.seq, last_seq + 1, "no chunk is skipped or repeated");
                last_seq = output.seq;
                received += output.data.len() as u64;
                if !paused && received > TOTAL / 4 {
                    // A reader that stops for seconds: the command must wait,
                    // and nothing may pile up in memory meanwhile.
                    paused = true;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
            }
            Some(Resp::Exited(exited)) => break exited,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(received, TOTAL);
    assert_eq!(exited.exit_code, Some(0));
    let agent_pid = common::agent_pid(&data.path().join("sandboxes").join(&id));
    let agent_rss = peak_rss(agent_pid);
    assert!(
        agent_rss < AGENT_RSS_BOUND,
        "the agent peaked at {} MiB",
        agent_rss >> 20
    );
    let server_rss = peak_rss(server.pid());
    assert!(
        server_rss < SERVER_RSS_BOUND,
        "the server peaked at {} MiB",
        server_rss >> 20
    );
    eprintln!(
        "1 GiB streamed; peak RSS: server {} MiB, agent {} MiB",
        server_rss >> 20,
        agent_rss >> 20
    );
}

async fn a_dropped_client_reattaches_and_gets_every_later_byte_once(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    let script = "for i in $(seq 1 3000); do echo line $i; done; sleep 0.5; echo done; exit 4";
    let expected: String = (1..=3000)
        .map(|i| format!("line {i}\n"))
        .chain(["done\n".to_string()])
        .collect();

    let mut first = Session::start(&mut client, &id, shell_spec(script)).await;
    let mut before = Vec::new();
    let mut last_seq = 0;
    while before.len() < 100 {
        let Some(Resp::Output(output)) = first.next().await else {
            panic!("output expected");
        };
        before.extend(output.data);
        last_seq = output.seq;
    }
    let command_id = first.command_id.clone();
    drop(first);

    let mut again = Session::open(
        &mut client,
        Req::Attach(pb::ExecAttach {
            sandbox_id: id.clone(),
            command_id: command_id.clone(),
            after_seq: last_seq,
        }),
    )
    .await;
    assert_eq!(again.command_id, command_id);
    let mut after = Vec::new();
    let exited = loop {
        match again.next().await {
            Some(Resp::Output(output)) => {
                assert_eq!(output.seq, last_seq + 1, "every later chunk exactly once");
                last_seq = output.seq;
                after.extend(output.data);
            }
            Some(Resp::Exited(exited)) => break exited,
            other => panic!("unexpected {other:?}"),
        }
    };
    before.extend(after);
    assert_eq!(String::from_utf8(before).unwrap(), expected);
    assert_eq!(exited.exit_code, Some(4));
}

async fn attach_says_when_asked_output_is_no_longer_kept(provider: Provider) {
    let server = TestServer::for_provider_with(provider, |args| {
        args.command_output_budget = Some("8MiB".into());
    })
    .await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    let command = client
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(shell_spec("head -c 32000000 /dev/zero; echo; echo tail")),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    let ended = wait_until_ended(&mut client, &id, &command.id).await;
    assert!(ended.first_retained_seq > 1, "{ended:?}");
    let mut log = Session::open(
        &mut client,
        Req::Attach(pb::ExecAttach {
            sandbox_id: id.clone(),
            command_id: command.id.clone(),
            after_seq: 0,
        }),
    )
    .await;
    let Some(Resp::OutputLost(lost)) = log.next().await else {
        panic!("the stream says first that early output is gone");
    };
    assert_eq!(lost.first_seq, 1);
    assert_eq!(lost.last_seq, ended.first_retained_seq - 1);
    let Some(Resp::Output(first)) = log.next().await else {
        panic!("then the retained output follows");
    };
    assert_eq!(first.seq, ended.first_retained_seq);
    let (rest, exited) = log.finish().await;
    assert!(rest.ends_with(b"\ntail\n"));
    assert_eq!(exited.exit_code, Some(0));
    // The whole budget is kept, less the records' headers.
    let kept = first.data.len() + rest.len();
    assert!(
        kept >= (8 << 20) - (64 << 10),
        "kept {kept} bytes of an 8 MiB budget"
    );
}

on_every_provider!(
    run_command_keeps_stdout_and_stderr_apart_and_caps_them,
    a_hundred_mib_through_stdin_comes_back_intact,
    a_dropped_client_reattaches_and_gets_every_later_byte_once,
    attach_says_when_asked_output_is_no_longer_kept,
);
