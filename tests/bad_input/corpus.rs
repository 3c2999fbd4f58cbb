//! A corpus of hostile requests sent to every RPC of every Paddock service:
//! messages built from the services' own descriptors with invalid UTF-8,
//! huge strings, negative numbers, unknown enum values, huge maps and lists,
//! path tricks and control characters, messages over the size limit, and
//! seeded random bytes; each once with a made-up sandbox id and once with a
//! real running sandbox, so that checks past the id are reached too, and on
//! client streams once more after a valid opening message (a started
//! command, an upload header), so that follow-up messages are checked too.
//!
//! Every answer must be a proper status: never INTERNAL, never UNKNOWN (what
//! a panic or a broken stream turns into), never a hang; and the server
//! must serve normally afterwards. On every provider: the checks past the
//! server's own are the agent's and the engine's.

use crate::common;
use crate::hostile::{Corpus, MUTATIONS, Noise};
use crate::on_every_provider;
use std::time::Duration;

use crate::common::{Provider, TestServer};
use bytes::{Buf, BufMut};
use paddock::pb;
use prost::Message;
use prost_types::FileDescriptorSet;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Sends and receives messages as the bytes they are.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// An RPC from the descriptors.
struct Rpc {
    path: String,
    input: String,
    client_streaming: bool,
    server_streaming: bool,
}

fn rpcs(set: &FileDescriptorSet) -> Vec<Rpc> {
    let mut rpcs = Vec::new();
    for file in set.file.iter().filter(|f| f.package() == "paddock.v1") {
        for service in &file.service {
            for method in &service.method {
                rpcs.push(Rpc {
                    path: format!("/paddock.v1.{}/{}", service.name(), method.name()),
                    input: method.input_type().to_owned(),
                    client_streaming: method.client_streaming(),
                    server_streaming: method.server_streaming(),
                });
            }
        }
    }
    rpcs
}

/// How long an answer stream may fall silent before it counts as hung.
const SILENCE: Duration = Duration::from_secs(20);
/// A stream that keeps answering past this many messages answers (a
/// download of a whole image's filesystem may run long): the rest is not
/// read.
const FLOWING: usize = 64;
/// How long a watch may fall silent before it counts as an open watch,
/// silent because it has sent every event there is.
const WATCH_QUIET: Duration = Duration::from_secs(2);

/// How a call answered.
enum Answer {
    /// It ended: OK, or the error status.
    Ended(Result<(), Status>),
    /// A watch that was accepted and waits for events (see
    /// [`check_open_watch`]).
    OpenWatch(Box<tonic::Streaming<Vec<u8>>>),
    /// A stream that fell silent for [`SILENCE`] without ending.
    Hung,
}

/// Sends `messages` to `rpc` and reads the answer to its end: the first
/// error status, or OK. Exec streams get a `close_stdin` after the corpus
/// messages, so that a command reading its input ends.
async fn call(channel: &Channel, rpc: &Rpc, mut messages: Vec<Vec<u8>>) -> Answer {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if let Err(e) = grpc.ready().await {
        return Answer::Ended(Err(Status::unavailable(format!("not ready: {e}"))));
    }
    let path = PathAndQuery::try_from(rpc.path.as_str()).unwrap();
    let method = rpc.path.rsplit('/').next().unwrap_or_default();
    if method == "Exec" {
        messages.push(
            pb::ExecRequest {
                request: Some(pb::exec_request::Request::CloseStdin(pb::CloseStdin {})),
            }
            .encode_to_vec(),
        );
    }
    let first = messages.first().cloned().unwrap_or_default();
    let request = tonic::Request::new(futures::stream::iter(messages));
    let opened = match (rpc.client_streaming, rpc.server_streaming) {
        (false, false) => {
            let answer = grpc.unary(tonic::Request::new(first), path, RawCodec).await;
            return Answer::Ended(answer.map(drop));
        }
        (true, false) => {
            let answer = grpc.client_streaming(request, path, RawCodec).await;
            return Answer::Ended(answer.map(drop));
        }
        (false, true) => {
            grpc.server_streaming(tonic::Request::new(first), path, RawCodec)
                .await
        }
        (true, true) => grpc.streaming(request, path, RawCodec).await,
    };
    let mut responses = match opened {
        Ok(responses) => responses.into_inner(),
        Err(status) => return Answer::Ended(Err(status)),
    };
    let watch = method == "WatchSandboxes";
    for _ in 0..FLOWING {
        let silence = if watch { WATCH_QUIET } else { SILENCE };
        match tokio::time::timeout(silence, responses.message()).await {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return Answer::Ended(Ok(())),
            Ok(Err(status)) => return Answer::Ended(Err(status)),
            // A watch falls silent once it has sent what exists.
            Err(_) if watch => return Answer::OpenWatch(Box::new(responses)),
            Err(_) => return Answer::Hung,
        }
    }
    Answer::Ended(Ok(()))
}

/// A watch that stayed silent was accepted: it must deliver an event that
/// happens after its revision, and stay silent only when none does. Makes
/// an event on the tenant (a new sandbox) and on `real_sandbox` (a label),
/// then expects one within [`SILENCE`] when the request's filter lets one
/// through. Returns what went wrong, if anything.
async fn check_open_watch(
    server: &TestServer,
    request: &[u8],
    real_sandbox: Option<&str>,
    mut watch: Box<tonic::Streaming<Vec<u8>>>,
) -> Option<String> {
    let Ok(request) = pb::WatchSandboxesRequest::decode(request) else {
        return Some("the server accepted a watch request that does not decode".into());
    };
    // The events that happen now: (sandbox, revision of its newest event).
    let made = server.create(pb::CreateSandboxRequest::default()).await;
    let mut events = vec![(made.id, made.revision)];
    if let Some(id) = real_sandbox {
        let updated = server
            .sandboxes()
            .await
            .update_sandbox(pb::UpdateSandboxRequest {
                sandbox_id: id.to_owned(),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["labels".into()],
                }),
                labels: [("corpus".to_owned(), "watched".to_owned())].into(),
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .sandbox?;
        events.push((updated.id, updated.revision));
    }
    let newest = events
        .into_iter()
        .filter(|(id, _)| request.sandbox_id.is_empty() || request.sandbox_id == *id)
        .map(|(_, revision)| revision)
        .max();
    let due = newest.is_some_and(|revision| request.after_revision < revision);
    // An event due must come; one not due gets a short look.
    let wait = if due { SILENCE } else { WATCH_QUIET };
    match tokio::time::timeout(wait, watch.message()).await {
        Ok(Ok(Some(_))) if due => None,
        Ok(Ok(Some(_))) => Some(format!(
            "the watch (after revision {}) delivered an event no filter lets through",
            request.after_revision
        )),
        Ok(Ok(None)) => Some("the watch ended without an error".into()),
        Ok(Err(status)) => Some(format!("the watch ended with {status:?}")),
        Err(_) if due => Some(format!(
            "the watch (after revision {}) stayed silent for {SILENCE:?} after revision {}",
            request.after_revision,
            newest.unwrap_or_default()
        )),
        Err(_) => None,
    }
}

/// For a client-streaming RPC, a valid first message on `sandbox_id`, so
/// that a corpus message sent after it is checked as a follow-up (stdin,
/// resize and signal on Exec; chunks on uploads).
fn valid_opening(rpc: &Rpc, sandbox_id: &str) -> Option<Vec<u8>> {
    let sandbox_id = sandbox_id.to_owned();
    let message = match rpc.path.rsplit('/').next()? {
        "Exec" => pb::ExecRequest {
            request: Some(pb::exec_request::Request::Start(pb::ExecStart {
                sandbox_id,
                spec: Some(pb::CommandSpec {
                    command: vec!["cat".into()],
                    ..Default::default()
                }),
                on_disconnect: pb::OnDisconnect::Kill as i32,
            })),
        }
        .encode_to_vec(),
        "Upload" => pb::UploadRequest {
            request: Some(pb::upload_request::Request::Header(pb::UploadHeader {
                sandbox_id,
                path: "corpus-upload.bin".into(),
                overwrite: true,
                ..Default::default()
            })),
        }
        .encode_to_vec(),
        "UploadArchive" => pb::UploadArchiveRequest {
            request: Some(pb::upload_archive_request::Request::Header(
                pb::UploadArchiveHeader {
                    sandbox_id,
                    path: "corpus-archive".into(),
                    overwrite: true,
                    ..Default::default()
                },
            )),
        }
        .encode_to_vec(),
        _ => return None,
    };
    Some(message)
}

on_every_provider!(every_rpc_answers_a_hostile_corpus_with_proper_statuses);

async fn every_rpc_answers_a_hostile_corpus_with_proper_statuses(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let rpcs = rpcs(&set);
    assert!(
        rpcs.len() >= 30,
        "every RPC of the three services: {}",
        rpcs.len()
    );
    let channel = server.channel().await;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut improper = Vec::new();
    let mut calls = 0;
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for rpc in &rpcs {
        for with_real_sandbox in [false, true] {
            let mut corpus = Corpus::new(&set);
            if with_real_sandbox {
                // A new one for each RPC, so that one deleting or stopping it
                // does not spoil the next.
                let sandbox = server.running_sandbox(Default::default()).await;
                corpus.sandbox_id = Some(sandbox.id);
            }
            let mut messages: Vec<(String, Vec<Vec<u8>>)> = MUTATIONS
                .iter()
                .map(|&mutation| {
                    corpus.oversized_done = false;
                    let message = corpus.message(&rpc.input, mutation, 0);
                    (format!("{mutation:?}"), vec![message])
                })
                .collect();
            if !with_real_sandbox {
                for n in 0..10 {
                    let len = [0, 1, 7, 64, 512, 4096][n % 6];
                    messages.push((format!("random {n}"), vec![noise.bytes(len)]));
                }
            }
            if let Some(id) = &corpus.sandbox_id
                && let Some(opening) = valid_opening(rpc, id)
            {
                let follow_ups: Vec<_> = MUTATIONS
                    .iter()
                    .map(|&mutation| {
                        corpus.oversized_done = false;
                        let message = corpus.message(&rpc.input, mutation, 0);
                        let what = format!("{mutation:?} after a valid opening");
                        (what, vec![opening.clone(), message])
                    })
                    .collect();
                messages.extend(follow_ups);
            }
            for (what, message) in messages {
                calls += 1;
                let size: usize = message.iter().map(Vec::len).sum();
                let opening = message.first().cloned().unwrap_or_default();
                let answer =
                    tokio::time::timeout(Duration::from_secs(60), call(&channel, rpc, message))
                        .await;
                let case = format!(
                    "{} {what} ({size} bytes, {} sandbox)",
                    rpc.path,
                    if with_real_sandbox { "real" } else { "made-up" }
                );
                let outcome = match answer {
                    Ok(Answer::OpenWatch(watch)) => {
                        match check_open_watch(
                            &server,
                            &opening,
                            corpus.sandbox_id.as_deref(),
                            watch,
                        )
                        .await
                        {
                            None => Ok(Ok(())),
                            Some(wrong) => {
                                improper.push(format!("{case}: {wrong}"));
                                Ok(Ok(()))
                            }
                        }
                    }
                    Ok(Answer::Ended(ended)) => Ok(ended),
                    Ok(Answer::Hung) | Err(_) => Err(()),
                };
                let code = match &outcome {
                    Ok(Ok(())) => "OK".to_owned(),
                    Ok(Err(status)) => format!("{:?}", status.code()),
                    Err(()) => "no answer".to_owned(),
                };
                *tally.entry(code).or_default() += 1;
                match outcome {
                    Err(()) => improper.push(format!("{case}: no answer (silent for {SILENCE:?})")),
                    Ok(Err(status))
                        if matches!(status.code(), Code::Internal | Code::Unknown)
                            || status.message().is_empty() =>
                    {
                        improper.push(format!(
                            "{case}: {:?} {:?}",
                            status.code(),
                            status.message()
                        ));
                    }
                    Ok(_) => {}
                }
            }
        }
    }
    eprintln!("{calls} corpus calls answered: {tally:?}");
    assert!(
        improper.is_empty(),
        "{} of {calls} calls got improper answers:\n{}",
        improper.len(),
        improper.join("\n")
    );

    // The server is well: it answers, and what the corpus made can go.
    let mut sandboxes = server.sandboxes().await;
    let listed = sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("the server serves after the corpus")
        .into_inner();
    assert!(
        !listed.sandboxes.is_empty(),
        "the fresh sandboxes are listed"
    );
    let id = server.running_sandbox(Default::default()).await.id;
    let ran = server.shell(&id, "echo still well").await;
    assert_eq!(ran, "still well\n");
}
