//! Operations through Paddock's gRPC API, each checked for the right
//! answer so that a fast wrong answer is never measured.

use bytes::Bytes;
use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use paddock::pb::file_service_client::FileServiceClient;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// The clients of one connection.
#[derive(Clone)]
pub struct Clients {
    pub sandboxes: SandboxServiceClient<Channel>,
    pub exec: ExecServiceClient<Channel>,
    pub files: FileServiceClient<Channel>,
}

impl Clients {
    pub fn new(channel: Channel) -> Self {
        Self {
            sandboxes: SandboxServiceClient::new(channel.clone()),
            exec: ExecServiceClient::new(channel.clone()),
            files: FileServiceClient::new(channel)
                .max_decoding_message_size(8 << 20)
                .max_encoding_message_size(8 << 20),
        }
    }

    /// Creates a sandbox and returns its id once it is RUNNING.
    pub async fn create(&mut self, request: pb::CreateSandboxRequest) -> String {
        let sandbox = self
            .sandboxes
            .create_sandbox(request)
            .await
            .expect("create a sandbox")
            .into_inner()
            .sandbox
            .expect("sandbox");
        assert_eq!(
            sandbox.state,
            pb::SandboxState::Running as i32,
            "sandbox not running: {}",
            sandbox.state_reason
        );
        sandbox.id
    }

    pub async fn delete(&mut self, id: &str) {
        self.sandboxes
            .delete_sandbox(pb::DeleteSandboxRequest {
                sandbox_id: id.to_owned(),
            })
            .await
            .expect("delete a sandbox");
    }

    /// RunCommand, checking the exit code; returns stdout.
    pub async fn run(&mut self, id: &str, command: &[&str]) -> Bytes {
        let answer = self
            .exec
            .run_command(pb::RunCommandRequest {
                sandbox_id: id.to_owned(),
                spec: Some(pb::CommandSpec {
                    command: command.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("RunCommand")
            .into_inner();
        assert_eq!(answer.exit_code, Some(0), "{command:?} failed");
        answer.stdout.into()
    }

    /// A bidirectional Exec of `command`, feeding it `stdin` (ended) and
    /// returning how many bytes of stdout came back. Asserts exit code 0.
    pub async fn exec(&mut self, id: &str, command: &[&str], stdin: Option<StdinFeed>) -> u64 {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tx.send(start(id, command)).await.expect("send start");
        let feeding = tokio::spawn(async move {
            if let Some(feed) = stdin {
                for chunk in feed.chunks() {
                    let message = pb::ExecRequest {
                        request: Some(pb::exec_request::Request::Stdin(chunk)),
                    };
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
                let _ = tx
                    .send(pb::ExecRequest {
                        request: Some(pb::exec_request::Request::CloseStdin(pb::CloseStdin {})),
                    })
                    .await;
            }
            // Holding the sender keeps the request stream open until the
            // command ends: an ended request stream would end stdin.
            tx.closed().await;
        });
        let mut responses = self
            .exec
            .exec(ReceiverStream::new(rx))
            .await
            .expect("Exec")
            .into_inner();
        let mut stdout = 0;
        let mut exit_code = None;
        while let Some(message) = responses.message().await.expect("Exec stream") {
            match message.response {
                Some(pb::exec_response::Response::Output(output))
                    if output.stream == pb::OutputStream::Stdout as i32 =>
                {
                    stdout += output.data.len() as u64;
                }
                Some(pb::exec_response::Response::Exited(exited)) => exit_code = exited.exit_code,
                _ => {}
            }
        }
        drop(responses);
        feeding.abort();
        assert_eq!(exit_code, Some(0), "{command:?} failed");
        stdout
    }

    /// Upload of `bytes` bytes of a fixed pattern to `path`.
    pub async fn upload(&mut self, id: &str, path: &str, bytes: u64) {
        let messages = std::iter::once(pb::UploadRequest {
            request: Some(pb::upload_request::Request::Header(pb::UploadHeader {
                sandbox_id: id.into(),
                path: path.into(),
                overwrite: true,
                ..Default::default()
            })),
        })
        .chain(StdinFeed(bytes).chunks().map(|chunk| pb::UploadRequest {
            request: Some(pb::upload_request::Request::Chunk(chunk)),
        }));
        self.files
            .upload(tokio_stream::iter(messages))
            .await
            .expect("Upload");
    }

    /// Download of `path`; returns the bytes received.
    pub async fn download(&mut self, id: &str, path: &str) -> u64 {
        let mut stream = self
            .files
            .download(pb::DownloadRequest {
                sandbox_id: id.into(),
                path: path.into(),
                ..Default::default()
            })
            .await
            .expect("Download")
            .into_inner();
        let mut total = 0;
        while let Some(message) = stream.message().await.expect("Download stream") {
            if let Some(pb::download_response::Response::Chunk(chunk)) = message.response {
                total += chunk.len() as u64;
            }
        }
        total
    }

    /// UploadArchive of a tar into `dir`; returns the entries unpacked.
    pub async fn upload_archive(&mut self, id: &str, dir: &str, tar: &Bytes) -> i64 {
        let header = pb::UploadArchiveRequest {
            request: Some(pb::upload_archive_request::Request::Header(
                pb::UploadArchiveHeader {
                    sandbox_id: id.into(),
                    path: dir.into(),
                    format: pb::ArchiveFormat::Tar as i32,
                    overwrite: true,
                },
            )),
        };
        let tar = tar.clone();
        let chunks = (0..tar.len())
            .step_by(1 << 20)
            .map(move |at| tar.slice(at..tar.len().min(at + (1 << 20))))
            .map(|chunk| pb::UploadArchiveRequest {
                request: Some(pb::upload_archive_request::Request::Chunk(chunk)),
            });
        self.files
            .upload_archive(tokio_stream::iter(std::iter::once(header).chain(chunks)))
            .await
            .expect("UploadArchive")
            .into_inner()
            .entries
    }

    /// DownloadArchive of `dir` as a tar; returns the archive.
    pub async fn download_archive(&mut self, id: &str, dir: &str) -> Vec<u8> {
        let mut stream = self
            .files
            .download_archive(pb::DownloadArchiveRequest {
                sandbox_id: id.into(),
                path: dir.into(),
                format: pb::ArchiveFormat::Tar as i32,
            })
            .await
            .expect("DownloadArchive")
            .into_inner();
        let mut tar = Vec::new();
        while let Some(message) = stream.message().await.expect("DownloadArchive stream") {
            tar.extend_from_slice(&message.chunk);
        }
        tar
    }

    pub async fn write_file(&mut self, id: &str, path: &str, content: &[u8]) {
        self.files
            .write_file(pb::WriteFileRequest {
                sandbox_id: id.into(),
                path: path.into(),
                content: content.to_vec(),
                overwrite: true,
                ..Default::default()
            })
            .await
            .expect("WriteFile");
    }

    pub async fn read_file(&mut self, id: &str, path: &str) -> Vec<u8> {
        self.files
            .read_file(pb::ReadFileRequest {
                sandbox_id: id.into(),
                path: path.into(),
                ..Default::default()
            })
            .await
            .expect("ReadFile")
            .into_inner()
            .content
    }

    pub async fn stat(&mut self, id: &str, path: &str) -> u64 {
        self.files
            .stat(pb::StatRequest {
                sandbox_id: id.into(),
                path: path.into(),
            })
            .await
            .expect("Stat")
            .into_inner()
            .info
            .expect("info")
            .size as u64
    }
}

fn start(id: &str, command: &[&str]) -> pb::ExecRequest {
    pb::ExecRequest {
        request: Some(pb::exec_request::Request::Start(pb::ExecStart {
            sandbox_id: id.to_owned(),
            spec: Some(pb::CommandSpec {
                command: command.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            on_disconnect: 0,
        })),
    }
}

/// A command writing `bytes` (a whole number of MiB) of zeros to stdout in
/// 1 MiB writes, so that the stream, not the writer, is measured (busybox
/// `head -c` writes a few KiB at a time).
pub fn stdout_command(bytes: u64) -> Vec<String> {
    assert_eq!(bytes % (1 << 20), 0, "whole MiB");
    ["dd", "if=/dev/zero", "bs=1048576"]
        .map(String::from)
        .into_iter()
        .chain([format!("count={}", bytes >> 20)])
        .collect()
}

/// `n` bytes of a fixed pattern, in 1 MiB chunks that share one buffer.
#[derive(Clone, Copy)]
pub struct StdinFeed(pub u64);

impl StdinFeed {
    pub fn chunks(self) -> impl Iterator<Item = Bytes> {
        let block = Bytes::from((0..1u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        let mut left = self.0;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            let n = left.min(block.len() as u64) as usize;
            left -= n as u64;
            Some(block.slice(..n))
        })
    }
}

/// An Exec stream of `cat` left open and idle (no input, no output), for
/// measuring what an idle stream costs; dropping it ends the command.
pub struct IdleStream {
    _requests: tokio::sync::mpsc::Sender<pb::ExecRequest>,
    _responses: tonic::Streaming<pb::ExecResponse>,
}

impl Clients {
    pub async fn idle_stream(&mut self, id: &str) -> IdleStream {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(start(id, &["cat"])).await.expect("send start");
        let mut responses = self
            .exec
            .exec(ReceiverStream::new(rx))
            .await
            .expect("Exec")
            .into_inner();
        match responses.message().await.expect("Exec stream") {
            Some(pb::ExecResponse {
                response: Some(pb::exec_response::Response::Started(_)),
            }) => {}
            other => panic!("expected Started, got {other:?}"),
        }
        IdleStream {
            _requests: tx,
            _responses: responses,
        }
    }
}
