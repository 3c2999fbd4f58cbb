//! FileService through gRPC on every provider: small operations, transfers
//! and archives, clear errors, escapes from a process sandbox, the server's
//! memory while a GiB moves, and an image with no shell.

#[path = "../common/mod.rs"]
mod common;

mod errors;
mod escapes;
mod no_shell;
mod small;
mod transfers;

use common::spawned::ServerProcess;
use common::{Provider, TestServer, eventually};
use paddock::pb;
use paddock::pb::file_service_client::FileServiceClient;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

type Files = FileServiceClient<Channel>;

async fn setup(provider: Provider) -> (TestServer, String, Files) {
    let server = TestServer::for_provider(provider).await;
    let id = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await
        .id;
    let files = files_client(server.channel().await);
    (server, id, files)
}

fn files_client(channel: Channel) -> Files {
    FileServiceClient::new(channel)
        .max_decoding_message_size(8 << 20)
        .max_encoding_message_size(8 << 20)
}

async fn write(files: &mut Files, id: &str, path: &str, content: &[u8]) -> pb::FileInfo {
    files
        .write_file(pb::WriteFileRequest {
            sandbox_id: id.into(),
            path: path.into(),
            content: content.to_vec(),
            create_parents: Some(true),
            overwrite: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap()
}

async fn read(files: &mut Files, request: pb::ReadFileRequest) -> pb::ReadFileResponse {
    files.read_file(request).await.unwrap().into_inner()
}

fn code_and_says<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, says: &str) {
    let status = result.expect_err("an error");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(says),
        "{:?} does not say {says:?}",
        status.message()
    );
}

/// Uploads `content` (in 1 MiB chunks) and returns the answer.
async fn upload(
    files: &mut Files,
    header: pb::UploadHeader,
    content: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> Result<pb::UploadResponse, tonic::Status> {
    let messages = std::iter::once(pb::UploadRequest {
        request: Some(pb::upload_request::Request::Header(header)),
    })
    .chain(content.map(|chunk| pb::UploadRequest {
        request: Some(pb::upload_request::Request::Chunk(chunk.into())),
    }));
    files
        .upload(tokio_stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

/// Downloads a file: its info and its bytes' sha256 and length.
async fn download(files: &mut Files, request: pb::DownloadRequest) -> (pb::FileInfo, String, u64) {
    let mut stream = files.download(request).await.unwrap().into_inner();
    let Some(pb::download_response::Response::Info(info)) =
        stream.message().await.unwrap().unwrap().response
    else {
        panic!("info comes first");
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(message) = stream.message().await.unwrap() {
        let Some(pb::download_response::Response::Chunk(chunk)) = message.response else {
            panic!("then chunks");
        };
        assert!(chunk.len() <= 256 << 10);
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (info, hex(&hasher.finalize()), size)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic bytes: `n` of them in chunks of `chunk`.
fn pattern(n: u64, chunk: usize) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    let mut sent = 0u64;
    std::iter::from_fn(move || {
        if sent == n {
            return None;
        }
        let len = (chunk as u64).min(n - sent) as usize;
        let block: Vec<u8> = (0..len).map(|i| ((sent + i as u64) % 251) as u8).collect();
        sent += len as u64;
        Some(block)
    })
}

fn pattern_sha256(n: u64) -> String {
    let mut hasher = Sha256::new();
    for block in pattern(n, 1 << 20) {
        hasher.update(&block);
    }
    hex(&hasher.finalize())
}
