//! What a command whose caller waits for it leaves on the sandbox's disk,
//! and that nothing the agent kept on disk before is lost now: `paddock
//! agent` run directly (no provider), its state directory on the host, its
//! held grace long enough that only the event under test can write a
//! command out.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{connect, eventually};
use paddock::pb;
use paddock::pb::exec_request::Request as Req;
use paddock::pb::exec_response::Response as Resp;
use paddock::pb::exec_service_client::ExecServiceClient;
use paddock::server::BoundAddr;
use tonic::transport::Channel;

type Exec = ExecServiceClient<Channel>;

/// Longer than any test: only the caller leaving, the output bound or the
/// agent stopping writes a held command out.
const LONG_GRACE_MS: u64 = 600_000;

/// A `paddock agent` on a state directory that outlives it.
struct Agent {
    child: Child,
    dir: PathBuf,
}

impl Agent {
    async fn start(dir: &Path, held_grace_ms: u64) -> (Self, Exec) {
        let socket = dir.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let child = Command::new(env!("CARGO_BIN_EXE_paddock"))
            .args([
                "agent",
                "--sandbox-id",
                "sbx_0123456789abcdef0123456789abcdef",
            ])
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(["--workdir", "/tmp"])
            .args(["--held-grace-ms", &held_grace_ms.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("paddock agent runs");
        eventually(Duration::from_secs(10), "the agent's socket", || {
            let socket = socket.clone();
            async move { socket.exists().then_some(()) }
        })
        .await;
        let client = ExecServiceClient::new(connect(&BoundAddr::Unix(socket)).await);
        let agent = Self {
            child,
            dir: dir.to_path_buf(),
        };
        (agent, client)
    }

    /// Where command `id`'s record and output would be.
    fn command_dir(&self, id: &str) -> PathBuf {
        self.dir.join("state").join("commands").join(id)
    }

    fn on_disk(&self, id: &str) -> bool {
        self.command_dir(id).join("command.pb").exists()
    }

    /// Ends the agent with `signal` and waits for it, serving this test's
    /// side of its connections meanwhile (a stopping agent waits for them).
    async fn end(mut self, signal: i32) {
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        while self.child.try_wait().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shell(line: &str) -> Option<pb::CommandSpec> {
    Some(pb::CommandSpec {
        shell: line.into(),
        ..Default::default()
    })
}

async fn run(client: &mut Exec, line: &str) -> pb::RunCommandResponse {
    client
        .run_command(pb::RunCommandRequest {
            spec: shell(line),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn list(client: &mut Exec) -> Vec<pb::Command> {
    client
        .list_commands(pb::ListCommandsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .commands
}

async fn get(client: &mut Exec, id: &str) -> pb::Command {
    client
        .get_command(pb::GetCommandRequest {
            command_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap()
}

/// Every output byte of command `id` replayed through Exec `attach`, and
/// how it ended.
async fn replay(client: &mut Exec, id: &str) -> (String, pb::ExecExited) {
    let first = pb::ExecRequest {
        request: Some(Req::Attach(pb::ExecAttach {
            command_id: id.into(),
            ..Default::default()
        })),
    };
    let mut answers = client
        .exec(futures::stream::iter([first]))
        .await
        .unwrap()
        .into_inner();
    let mut output = Vec::new();
    while let Some(answer) = answers.message().await.unwrap() {
        match answer.response {
            Some(Resp::Output(chunk)) => output.extend_from_slice(&chunk.data),
            Some(Resp::Exited(exited)) => return (String::from_utf8(output).unwrap(), exited),
            Some(Resp::OutputLost(lost)) => panic!("output lost: {lost:?}"),
            _ => {}
        }
    }
    panic!("the replay ended without `exited`")
}

/// The only command listed, once it has written `chunks` output chunks.
async fn running_with_output(client: &Exec, chunks: i64) -> pb::Command {
    eventually(Duration::from_secs(10), "the command's output", || {
        let mut client = client.clone();
        async move {
            let listed = list(&mut client).await;
            listed
                .into_iter()
                .find(|c| c.state == pb::CommandState::Running as i32 && c.last_seq >= chunks)
        }
    })
    .await
}

/// Kills what an ended agent left running: the process group `pgid`.
fn kill_group(pgid: i32) {
    assert!(pgid > 0, "a process group, not {pgid}");
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

#[tokio::test]
async fn a_short_command_whose_caller_waits_touches_no_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, mut client) = Agent::start(dir.path(), LONG_GRACE_MS).await;

    let ran = run(&mut client, "echo hi; echo there >&2").await;
    assert_eq!(
        (&ran.stdout[..], &ran.stderr[..]),
        (&b"hi\n"[..], &b"there\n"[..])
    );
    assert!(
        !agent.command_dir(&ran.command_id).exists(),
        "held in memory: not even its directory"
    );
    // Held, it is listed and replayed like any other.
    let command = get(&mut client, &ran.command_id).await;
    assert_eq!(command.state, pb::CommandState::Exited as i32);
    assert_eq!(command.exit_code, Some(0));
    let (output, exited) = replay(&mut client, &ran.command_id).await;
    // Two pipes: their chunks may come in either order.
    assert!(
        output.len() == 9 && output.contains("hi\n") && output.contains("there\n"),
        "{output:?}"
    );
    assert_eq!(exited.exit_code, Some(0));

    let started = client
        .start_command(pb::StartCommandRequest {
            spec: shell("true"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    assert!(
        agent.on_disk(&started.id),
        "a detached command is recorded as it starts"
    );
}

#[tokio::test]
async fn a_command_goes_to_disk_past_its_grace_or_its_output_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, mut client) = Agent::start(dir.path(), 200).await;
    let slow = run(&mut client, "sleep 0.6; echo slow").await;
    assert!(agent.on_disk(&slow.command_id), "it outlived its grace");
    drop(agent);

    let (agent, mut client) = Agent::start(dir.path(), LONG_GRACE_MS).await;
    let loud = client
        .run_command(pb::RunCommandRequest {
            spec: shell("head -c 3000000 /dev/zero"),
            max_output_bytes: 4 << 20,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        loud.stdout.len(),
        3_000_000,
        "every byte reached the caller"
    );
    assert!(agent.on_disk(&loud.command_id), "its output passed 1 MiB");
    let (output, _) = replay(&mut client, &loud.command_id).await;
    assert_eq!(output.len(), 3_000_000, "and every byte is kept");
}

/// A RunCommand whose client goes mid-way, then an agent killed outright:
/// the next agent knows the command (LOST) and all the output it wrote, as
/// when every command was recorded as it started. Likewise an Exec stream
/// that started its command and went.
#[tokio::test]
async fn a_caller_that_goes_leaves_its_command_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = Agent::start(dir.path(), LONG_GRACE_MS).await;
    let call = {
        let mut client = client.clone();
        tokio::spawn(async move {
            client
                .run_command(pb::RunCommandRequest {
                    spec: shell("echo early; echo oops >&2; exec sleep 60"),
                    ..Default::default()
                })
                .await
        })
    };
    let command = running_with_output(&client, 2).await;
    assert!(!agent.on_disk(&command.id), "held while its caller waits");
    call.abort();
    eventually(Duration::from_secs(5), "the command written out", || {
        let written = agent.on_disk(&command.id);
        async move { written.then_some(()) }
    })
    .await;

    let first = pb::ExecRequest {
        request: Some(Req::Start(pb::ExecStart {
            spec: shell("echo streamed; exec sleep 60"),
            ..Default::default()
        })),
    };
    // The caller's side of the stream: its requests stay open until it goes.
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    requests.send(first).await.unwrap();
    let mut stream = client
        .clone()
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let Some(Resp::Started(started)) = stream.message().await.unwrap().unwrap().response else {
        panic!("started first")
    };
    let Some(Resp::Output(_)) = stream.message().await.unwrap().unwrap().response else {
        panic!("then its output")
    };
    assert!(!agent.on_disk(&started.command_id));
    let streamed_pgid = get(&mut client.clone(), &started.command_id).await.pid;
    drop((requests, stream));
    eventually(
        Duration::from_secs(5),
        "the streamed command written out",
        || {
            let written = agent.on_disk(&started.command_id);
            async move { written.then_some(()) }
        },
    )
    .await;

    agent.end(libc::SIGKILL).await;
    kill_group(command.pid);
    kill_group(streamed_pgid);
    let (_agent, mut client) = Agent::start(dir.path(), LONG_GRACE_MS).await;
    let lost = get(&mut client, &command.id).await;
    assert_eq!(lost.state, pb::CommandState::Lost as i32);
    let (output, _) = replay(&mut client, &command.id).await;
    assert!(
        output.contains("early\n") && output.contains("oops\n"),
        "{output:?}"
    );
    let (output, _) = replay(&mut client, &started.command_id).await;
    assert_eq!(output, "streamed\n");
}

/// An agent asked to stop while a short command runs, with another one
/// ended and held: the next agent knows both, with their output and how
/// they ended.
#[tokio::test]
async fn a_stopping_agent_writes_its_held_commands_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, client) = Agent::start(dir.path(), LONG_GRACE_MS).await;
    let done = run(&mut client.clone(), "echo done").await;
    let call = {
        let mut client = client.clone();
        tokio::spawn(async move {
            client
                .run_command(pb::RunCommandRequest {
                    spec: shell("echo early; exec sleep 60"),
                    ..Default::default()
                })
                .await
        })
    };
    let running = running_with_output(&client, 1).await;
    assert!(!agent.on_disk(&done.command_id) && !agent.on_disk(&running.id));

    agent.end(libc::SIGTERM).await;
    let answer = call.await.unwrap().unwrap().into_inner();
    assert_eq!(
        answer.signal, "SIGKILL",
        "the waiting caller hears how it ended"
    );
    let (_agent, mut client) = Agent::start(dir.path(), LONG_GRACE_MS).await;
    let (output, exited) = replay(&mut client, &done.command_id).await;
    assert_eq!((output.as_str(), exited.exit_code), ("done\n", Some(0)));
    let (output, exited) = replay(&mut client, &running.id).await;
    assert_eq!(output, "early\n");
    assert_eq!(exited.signal, "SIGKILL", "the stopping agent ended it");
}
