//! ExecService through gRPC: terminals, streams, signals, timeouts,
//! reattach, restarts and limits, on the process provider and on Docker
//! (`on_every_provider!` in each topic), plus checks only one provider has
//! (bubblewrap, memory of the server and agent processes, an image with no
//! shell).

#[path = "../common/mod.rs"]
mod common;

mod isolation;
mod lifetimes;
mod limits;
mod no_shell;
mod signals;
mod streams;
mod terminal;
mod users;

use bytes::Bytes;
use common::spawned::ServerProcess;
use common::{Provider, TestServer, eventually};
use paddock::pb;
use paddock::pb::exec_request::Request as Req;
use paddock::pb::exec_response::Response as Resp;
use paddock::pb::exec_service_client::ExecServiceClient;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

type Exec = ExecServiceClient<Channel>;

/// A new running sandbox's id.
async fn sandbox(server: &TestServer) -> String {
    server.running_sandbox(Default::default()).await.id
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

fn agent_pid(server: &TestServer, sandbox_id: &str) -> u32 {
    common::agent_pid(&server.sandbox_dir(sandbox_id))
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
