//! One file moved between this machine and a sandbox, as `paddock cp` and
//! `paddock mcp` move it: streamed in chunks both ways, an upload's sha256
//! checked against what the sandbox wrote, a download's size against the
//! file's, with a progress line for large transfers.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::pb;
use crate::pb::file_service_client::FileServiceClient;

/// The bytes of one upload message; the server takes at most 1 MiB.
pub const CHUNK: usize = 1 << 20;
/// Transfers smaller than this show no progress.
pub const PROGRESS_FROM: u64 = 8 << 20;

/// Streams the local file to `target` in the sandbox in 1 MiB chunks,
/// replacing what is there, and fails unless the sandbox wrote the sha256
/// that was sent. `progress`: a progress line on stderr for large files.
pub async fn upload_file(
    mut files: FileServiceClient<super::Connection>,
    sandbox_id: &str,
    local: &Path,
    target: &str,
    show_progress: bool,
) -> anyhow::Result<pb::UploadResponse> {
    let mut file = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("cannot open {}", local.display()))?;
    let size = file.metadata().await.map_or(0, |meta| meta.len());
    let (sender, requests) = mpsc::channel(4);
    let header = pb::UploadRequest {
        request: Some(pb::upload_request::Request::Header(pb::UploadHeader {
            sandbox_id: sandbox_id.to_owned(),
            path: target.to_owned(),
            overwrite: true,
            ..Default::default()
        })),
    };
    let shown = local.display().to_string();
    let mut progress = Progress::new(show_progress && size >= PROGRESS_FROM, size);
    let reader = tokio::spawn(async move {
        let mut digest = Sha256::new();
        if sender.send(header).await.is_err() {
            return Ok(digest);
        }
        loop {
            let mut chunk = vec![0; CHUNK];
            let n = file
                .read(&mut chunk)
                .await
                .with_context(|| format!("cannot read {shown}"))?;
            if n == 0 {
                progress.done();
                return Ok::<_, anyhow::Error>(digest);
            }
            chunk.truncate(n);
            digest.update(&chunk);
            progress.add(n as u64);
            let message = pb::UploadRequest {
                request: Some(pb::upload_request::Request::Chunk(chunk.into())),
            };
            if sender.send(message).await.is_err() {
                return Ok(digest);
            }
        }
    });
    let answer = files.upload(ReceiverStream::new(requests)).await;
    let digest = reader.await??;
    let answer = answer?.into_inner();
    let sent = hex(&digest.finalize());
    if answer.sha256 != sent {
        bail!(
            "{target}: the sandbox wrote sha256 {}, but {sent} was sent",
            answer.sha256
        );
    }
    Ok(answer)
}

/// Streams the sandbox's file `path` into the local file `target`
/// (replacing it); returns the file's info and the bytes received, and
/// fails when they are not the file's size.
pub async fn download_file(
    mut files: FileServiceClient<super::Connection>,
    sandbox_id: &str,
    path: &str,
    target: &Path,
    show_progress: bool,
) -> anyhow::Result<(pb::FileInfo, u64)> {
    let mut stream = files
        .download(pb::DownloadRequest {
            sandbox_id: sandbox_id.to_owned(),
            path: path.to_owned(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut file = tokio::fs::File::create(target)
        .await
        .with_context(|| format!("cannot create {}", target.display()))?;
    let mut info = pb::FileInfo::default();
    let mut progress = Progress::new(false, 0);
    let mut received = 0u64;
    while let Some(message) = stream.message().await? {
        match message.response {
            Some(pb::download_response::Response::Info(first)) => {
                let size = u64::try_from(first.size).unwrap_or(0);
                progress = Progress::new(show_progress && size >= PROGRESS_FROM, size);
                info = first;
            }
            Some(pb::download_response::Response::Chunk(chunk)) => {
                file.write_all(&chunk).await?;
                received += chunk.len() as u64;
                progress.add(chunk.len() as u64);
            }
            None => {}
        }
    }
    file.flush().await?;
    progress.done();
    if received != u64::try_from(info.size).unwrap_or(0) {
        bail!("{path}: {received} bytes arrived of {}", info.size);
    }
    Ok((info, received))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A progress line on stderr for large transfers: bytes moved, of how
/// many when known, and the rate.
pub struct Progress {
    shown: bool,
    total: u64,
    moved: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    pub fn new(shown: bool, total: u64) -> Self {
        let now = Instant::now();
        Self {
            shown,
            total,
            moved: 0,
            started: now,
            last: now,
        }
    }

    pub fn add(&mut self, bytes: u64) {
        self.moved += bytes;
        if self.shown && self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            self.print();
        }
    }

    fn print(&self) {
        let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        let of = if self.total > 0 {
            format!(
                " of {:.1} MiB ({:.0}%)",
                mib(self.total),
                100.0 * self.moved as f64 / self.total as f64
            )
        } else {
            String::new()
        };
        eprint!(
            "\r{:.1} MiB{of}, {:.1} MiB/s  ",
            mib(self.moved),
            mib(self.moved) / seconds
        );
    }

    pub fn done(&mut self) {
        if self.shown {
            self.print();
            eprintln!();
            self.shown = false;
        }
    }
}
