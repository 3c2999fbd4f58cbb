//! ExecService through gRPC: terminals, streams, signals, timeouts,
//! reattach, restarts and limits, on the process provider and on Docker
//! (`on_every_provider!` at the end), plus checks only the process provider
//! has (bubblewrap, memory of the server and agent processes).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::spawned::ServerProcess;
use common::{Provider, TestServer, eventually};
use paddock::pb;
use paddock::pb::exec_request::Request as Req;
use paddock::pb::exec_response::Response as Resp;
use paddock::pb::exec_service_client::ExecServiceClient;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

type Exec = ExecServiceClient<Channel>;

async fn sandbox(server: &TestServer) -> String {
    server
        .sandboxes()
        .await
        .create_sandbox(pb::CreateSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap()
        .id
}

async fn exec_client(server: &TestServer) -> Exec {
    ExecServiceClient::new(server.channel().await).max_decoding_message_size(16 << 20)
}

fn shell_spec(line: &str) -> pb::CommandSpec {
    pb::CommandSpec {
        shell: line.into(),
        ..Default::default()
    }
}

/// An open Exec stream.
struct Session {
    requests: mpsc::Sender<pb::ExecRequest>,
    responses: tonic::Streaming<pb::ExecResponse>,
    command_id: String,
}

impl Session {
    async fn open(client: &mut Exec, first: Req) -> Self {
        let (requests, rx) = mpsc::channel(16);
        requests
            .send(pb::ExecRequest {
                request: Some(first),
            })
            .await
            .unwrap();
        let mut responses = client
            .exec(ReceiverStream::new(rx))
            .await
            .expect("exec opens")
            .into_inner();
        let Some(Resp::Started(started)) = responses.message().await.unwrap().unwrap().response
        else {
            panic!("the first answer is started");
        };
        Self {
            requests,
            responses,
            command_id: started.command_id,
        }
    }

    async fn start(client: &mut Exec, sandbox_id: &str, spec: pb::CommandSpec) -> Self {
        Self::open(
            client,
            Req::Start(pb::ExecStart {
                sandbox_id: sandbox_id.into(),
                spec: Some(spec),
                on_disconnect: pb::OnDisconnect::KeepRunning as i32,
            }),
        )
        .await
    }

    async fn send(&self, request: Req) {
        self.requests
            .send(pb::ExecRequest {
                request: Some(request),
            })
            .await
            .unwrap();
    }

    /// The next answer, within 10 s.
    async fn next(&mut self) -> Option<Resp> {
        tokio::time::timeout(Duration::from_secs(10), self.responses.message())
            .await
            .expect("an answer within 10s")
            .unwrap()
            .map(|m| m.response.unwrap())
    }

    /// Reads output until `wanted` appears in what was read.
    async fn read_until(&mut self, wanted: &str) -> String {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(wanted) {
            match self.next().await {
                Some(Resp::Output(output)) => seen.extend(output.data),
                other => panic!(
                    "stream ended before {wanted:?} (got {other:?}) after {:?}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    /// Reads to the end: all output bytes, and how the command exited.
    async fn finish(&mut self) -> (Vec<u8>, pb::ExecExited) {
        let mut output = Vec::new();
        loop {
            match self.next().await {
                Some(Resp::Output(chunk)) => output.extend(chunk.data),
                Some(Resp::Exited(exited)) => {
                    assert!(self.next().await.is_none(), "exited is the last answer");
                    return (output, exited);
                }
                other => panic!("unexpected answer {other:?}"),
            }
        }
    }
}

async fn a_tty_shell_echoes_and_sees_resizes(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    let mut shell = Session::start(
        &mut client,
        &id,
        pb::CommandSpec {
            command: vec!["/bin/sh".into()],
            tty: true,
            rows: 24,
            cols: 80,
            ..Default::default()
        },
    )
    .await;
    // The terminal echoes input, and the shell may print its prompt before or after that echo:
    // the quotes keep the echoed line from containing what only the command prints.
    shell
        .send(Req::Stdin(Bytes::from_static(b"echo h''i\n")))
        .await;
    shell.read_until("hi\r\n").await;
    shell
        .send(Req::Resize(pb::Resize {
            rows: 40,
            cols: 120,
        }))
        .await;
    shell
        .send(Req::Stdin(Bytes::from_static(b"stty size\n")))
        .await;
    shell.read_until("40 120").await;
    shell
        .send(Req::Stdin(Bytes::from_static(b"exit 5\n")))
        .await;
    let (_, exited) = shell.finish().await;
    assert_eq!(exited.exit_code, Some(5));
}

async fn run_command_keeps_stdout_and_stderr_apart_and_caps_them(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    let ran = client
        .run_command(pb::RunCommandRequest {
            sandbox_id: id.clone(),
            shell: "echo out; echo err >&2; cat; exit 7".into(),
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
            command: vec![
                "head".into(),
                "-c".into(),
                "5000".into(),
                "/dev/zero".into(),
            ],
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

fn agent_pid(server: &TestServer, sandbox_id: &str) -> u32 {
    common::agent_pid(&server.sandbox_dir(sandbox_id))
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
            command: vec!["sleep".into(), "100".into()],
            timeout: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ran.timed_out);
    assert_eq!(ran.signal, "SIGKILL");
    assert!(
        started.elapsed() < Duration::from_secs(2),
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

async fn wait_until_ended(client: &mut Exec, sandbox_id: &str, command_id: &str) -> pb::Command {
    eventually(Duration::from_secs(10), "the command to end", || {
        let mut client = client.clone();
        async move {
            let command = client
                .get_command(pb::GetCommandRequest {
                    sandbox_id: sandbox_id.into(),
                    command_id: command_id.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .command
                .unwrap();
            (command.state != pb::CommandState::Running as i32).then_some(command)
        }
    })
    .await
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

async fn detached_output_and_exit_survive_a_server_restart(provider: Provider) {
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(data.path(), |args| provider.configure(args)).await;
    let _cleanup = common::docker::RemoveContainers(server.scope.clone());
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    let command = client
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(shell_spec("echo detached; echo oops >&2; exit 3")),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    assert_eq!(command.state, pb::CommandState::Running as i32);
    let ended = wait_until_ended(&mut client, &id, &command.id).await;
    assert_eq!(ended.exit_code, Some(3));
    server.stop().await;

    let server = TestServer::start_in(data.path(), |args| provider.configure(args)).await;
    let mut client = exec_client(&server).await;
    let listed = client
        .list_commands(pb::ListCommandsRequest {
            sandbox_id: id.clone(),
            states: vec![],
        })
        .await
        .unwrap()
        .into_inner()
        .commands;
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
        text.contains("detached\n") && text.contains("oops\n"),
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
                    command: vec!["echo".into(), i.to_string()],
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
            command: vec!["true".into()],
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
            "command:",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: id.clone(),
                command: vec!["true".into()],
                shell: "true".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "shell:",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: id.clone(),
                command: vec!["true".into()],
                max_output_bytes: 64 << 20,
                ..Default::default()
            },
            Code::InvalidArgument,
            "max_output_bytes:",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: id.clone(),
                command: vec!["true".into()],
                workdir: "relative".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "workdir:",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: id.clone(),
                command: vec!["/no/such/program".into()],
                ..Default::default()
            },
            Code::FailedPrecondition,
            "cannot start",
        ),
        (
            pb::RunCommandRequest {
                sandbox_id: "sbx_0123456789abcdef0123456789abcdef".into(),
                command: vec!["true".into()],
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
        command: vec!["true".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("STOPPED"), "{}", status.message());
}

/// Whether the process provider confines sandboxes with bubblewrap here.
/// Under CI=true it must (scripts/test installs bubblewrap).
async fn confined(server: &TestServer) -> bool {
    let providers = server
        .sandboxes()
        .await
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    let process = providers
        .iter()
        .find(|p| p.name == "process")
        .expect("the process provider is listed");
    let confined = process.isolation.starts_with("bubblewrap");
    if !confined {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !in_ci,
            "bubblewrap is unavailable, and CI=true forbids skipping the isolation tests"
        );
        eprintln!("SKIPPED: isolation test; install bubblewrap (bwrap) to run it");
    }
    confined
}

#[tokio::test]
async fn bubblewrap_gives_each_sandbox_its_own_namespaces() {
    let server = TestServer::start().await;
    if !confined(&server).await {
        return;
    }
    let mut sandboxes = server.sandboxes().await;
    let offline = sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            network: pb::NetworkMode::None as i32,
            workdir: "/work/project".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap()
        .id;
    let mut client = exec_client(&server).await;
    let ran = client
        .run_command(pb::RunCommandRequest {
            sandbox_id: offline.clone(),
            shell: "hostname; pwd; echo $$; ls /proc | grep -c '^[0-9]'; \
                    grep -c : /proc/net/dev; echo made > here; touch /etc/paddock-escape"
                .into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let stdout = String::from_utf8(ran.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "sandbox", "its own host name");
    assert_eq!(lines[1], "/work/project", "the workdir at its sandbox path");
    assert!(
        lines[3].parse::<u32>().unwrap() <= 5,
        "only its own processes: {stdout}"
    );
    assert_eq!(lines[4], "1", "loopback only with NETWORK_MODE_NONE");
    assert!(
        String::from_utf8_lossy(&ran.stderr).contains("Read-only file system"),
        "the host's files are read-only: {:?}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(!std::path::Path::new("/etc/paddock-escape").exists());
    assert_eq!(
        std::fs::read_to_string(
            server
                .sandbox_dir(&offline)
                .join("rootfs/work/project/here")
        )
        .unwrap(),
        "made\n",
        "the workdir is the sandbox's own directory"
    );

    // KillProcesses reaches processes that left their command's group.
    let escaped = client
        .start_command(pb::StartCommandRequest {
            sandbox_id: offline.clone(),
            spec: Some(shell_spec("setsid sleep 100 & sleep 100")),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    client
        .kill_processes(pb::KillProcessesRequest {
            sandbox_id: offline.clone(),
            signal: String::new(),
        })
        .await
        .unwrap();
    wait_until_ended(&mut client, &offline, &escaped.id).await;
    let left = client
        .run_command(pb::RunCommandRequest {
            sandbox_id: offline.clone(),
            shell: "ps -e -o comm= | grep -c sleep || true".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(String::from_utf8(left.stdout).unwrap().trim(), "0");
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
            spec: Some(shell_spec("sleep 3")),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
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
            shell: "echo hi".into(),
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
            command: vec!["ls".into(), "/bin".into(), "/nonexistent".into()],
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
            command: vec!["sleep".into(), "30".into()],
            timeout: Some(prost_types::Duration {
                seconds: 0,
                nanos: 300_000_000,
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

on_every_provider!(
    a_tty_shell_echoes_and_sees_resizes,
    run_command_keeps_stdout_and_stderr_apart_and_caps_them,
    a_hundred_mib_through_stdin_comes_back_intact,
    signals_and_timeouts_end_commands_and_say_so,
    a_dropped_client_reattaches_and_gets_every_later_byte_once,
    detached_output_and_exit_survive_a_server_restart,
    a_command_whose_agent_died_is_lost_not_running,
    two_hundred_concurrent_run_commands_succeed,
    limits_answer_resource_exhausted_instead_of_hanging,
    exec_checks_its_input_and_the_sandbox,
    attach_says_when_asked_output_is_no_longer_kept,
    on_disconnect_kill_ends_the_command_with_its_stream,
    a_running_detached_command_keeps_its_sandbox_from_idling_out,
);
