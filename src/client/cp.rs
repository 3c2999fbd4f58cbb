//! `paddock cp`: files and directory trees between this machine and a
//! sandbox, as `docker cp` copies them. A file travels through Upload or
//! Download (an upload's sha256 is checked by the server); a directory as a
//! tar stream through UploadArchive or DownloadArchive, packed and unpacked
//! here as it flows, so memory stays flat whatever the size.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ClientArgs;
use super::commands::sandbox_id_of;
use super::transfer::{CHUNK, PROGRESS_FROM, Progress, download_file, upload_file};
use crate::pb;
use crate::pb::file_service_client::FileServiceClient;
use crate::pb::sandbox_service_client::SandboxServiceClient;

/// `paddock cp`.
#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// What to copy: a local path, or SANDBOX:PATH (a sandbox's name or id,
    /// then a path in it; relative paths start at its working directory).
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// Where to: a local path, or SANDBOX:PATH. An existing directory
    /// receives the source inside it, under the source's name; otherwise
    /// the source is copied as this path. Exactly one side is a sandbox.
    #[arg(value_name = "DESTINATION")]
    pub destination: String,
    /// Print no progress, even on a terminal.
    #[arg(short, long)]
    pub quiet: bool,
}

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    Sandbox { sandbox: String, path: String },
}

/// `SANDBOX:PATH` when the text before the first ':' names no directory
/// (write `./a:b` for a local file named `a:b`), else a local path.
fn place(text: &str) -> Place {
    match text.split_once(':') {
        Some((sandbox, path)) if !sandbox.is_empty() && !sandbox.contains('/') => Place::Sandbox {
            sandbox: sandbox.to_owned(),
            path: if path.is_empty() {
                ".".into()
            } else {
                path.to_owned()
            },
        },
        _ => Place::Local(text.into()),
    }
}

/// Copies and prints what was copied.
pub async fn cp(client: &ClientArgs, args: CpArgs) -> anyhow::Result<ExitCode> {
    let connection = client.connect().await?;
    let mut sandboxes = SandboxServiceClient::new(connection.clone());
    let files = FileServiceClient::new(connection);
    let progress = !args.quiet && std::io::stderr().is_terminal();
    match (place(&args.source), place(&args.destination)) {
        (Place::Local(local), Place::Sandbox { sandbox, path }) => {
            let sandbox_id = sandbox_id_of(&mut sandboxes, &sandbox).await?;
            let copy = Copy {
                files,
                sandbox_id,
                progress,
            };
            copy.upload(&local, &path).await?;
        }
        (Place::Sandbox { sandbox, path }, Place::Local(local)) => {
            let sandbox_id = sandbox_id_of(&mut sandboxes, &sandbox).await?;
            let copy = Copy {
                files,
                sandbox_id,
                progress,
            };
            copy.download(&path, &local).await?;
        }
        (Place::Local(_), Place::Local(_)) => {
            bail!("neither side names a sandbox: write one as SANDBOX:PATH")
        }
        (Place::Sandbox { .. }, Place::Sandbox { .. }) => {
            bail!("both sides name a sandbox: copy through this machine, one side at a time")
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct Copy {
    files: FileServiceClient<super::Connection>,
    sandbox_id: String,
    progress: bool,
}

impl Copy {
    /// What `path` is in the sandbox; `None` when nothing is there.
    async fn stat(&self, path: &str) -> anyhow::Result<Option<pb::FileInfo>> {
        let answer = self
            .files
            .clone()
            .stat(pb::StatRequest {
                sandbox_id: self.sandbox_id.clone(),
                path: path.to_owned(),
            })
            .await;
        match answer {
            Ok(answer) => Ok(answer.into_inner().info),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(status.into()),
        }
    }

    async fn upload(&self, local: &Path, path: &str) -> anyhow::Result<()> {
        let meta =
            std::fs::metadata(local).with_context(|| format!("cannot read {}", local.display()))?;
        let name = local
            .canonicalize()
            .ok()
            .and_then(|full| {
                full.file_name()
                    .map(|name| name.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        let target = match self.stat(path).await? {
            Some(info) if info.r#type() == pb::FileType::Directory && !name.is_empty() => {
                format!("{}/{name}", path.trim_end_matches('/'))
            }
            _ => path.to_owned(),
        };
        if meta.is_dir() {
            self.upload_tree(local, &target).await
        } else {
            self.upload_file(local, &target).await
        }
    }

    async fn upload_file(&self, local: &Path, target: &str) -> anyhow::Result<()> {
        let answer = upload_file(
            self.files.clone(),
            &self.sandbox_id,
            local,
            target,
            self.progress,
        )
        .await?;
        let info = answer.info.unwrap_or_default();
        println!("{} -> {}: {} bytes", local.display(), info.path, info.size);
        Ok(())
    }

    async fn upload_tree(&self, local: &Path, target: &str) -> anyhow::Result<()> {
        let (sender, requests) = mpsc::channel(4);
        let header = pb::UploadArchiveRequest {
            request: Some(pb::upload_archive_request::Request::Header(
                pb::UploadArchiveHeader {
                    sandbox_id: self.sandbox_id.clone(),
                    path: target.to_owned(),
                    format: pb::ArchiveFormat::Tar.into(),
                    overwrite: true,
                },
            )),
        };
        sender
            .send(header)
            .await
            .map_err(|_| anyhow::anyhow!("the upload ended early"))?;
        let total = tree_size(local);
        let progress = Progress::new(self.progress && total >= PROGRESS_FROM, total);
        let root = local.to_path_buf();
        // tar writes synchronously: pack on a blocking thread into the
        // request stream, one chunk at a time.
        let packer = tokio::task::spawn_blocking(move || {
            let mut builder = tar::Builder::new(ChunkWriter {
                sender,
                buffer: Vec::with_capacity(CHUNK),
                progress,
            });
            builder.follow_symlinks(false);
            builder
                .append_dir_all(".", &root)
                .with_context(|| format!("cannot pack {}", root.display()))?;
            let mut writer = builder.into_inner()?;
            writer.flush()?;
            writer.progress.done();
            Ok::<_, anyhow::Error>(())
        });
        let answer = self
            .files
            .clone()
            .upload_archive(ReceiverStream::new(requests))
            .await;
        packer.await??;
        let answer = answer?.into_inner();
        println!(
            "{} -> {target}: {} entries, {} bytes",
            local.display(),
            answer.entries,
            answer.bytes
        );
        Ok(())
    }

    async fn download(&self, path: &str, local: &Path) -> anyhow::Result<()> {
        let info = self
            .stat(path)
            .await?
            .with_context(|| format!("{path}: no such file or directory in the sandbox"))?;
        let target = if local.is_dir() {
            local.join(Path::new(&info.path).file_name().unwrap_or_default())
        } else {
            local.to_path_buf()
        };
        if info.r#type() == pb::FileType::Directory {
            self.download_tree(&info, &target).await
        } else {
            self.download_file(&info, &target).await
        }
    }

    async fn download_file(&self, info: &pb::FileInfo, target: &Path) -> anyhow::Result<()> {
        let (_, received) = download_file(
            self.files.clone(),
            &self.sandbox_id,
            &info.path,
            target,
            self.progress,
        )
        .await?;
        println!("{} -> {}: {received} bytes", info.path, target.display());
        Ok(())
    }

    async fn download_tree(&self, info: &pb::FileInfo, target: &Path) -> anyhow::Result<()> {
        let mut stream = self
            .files
            .clone()
            .download_archive(pb::DownloadArchiveRequest {
                sandbox_id: self.sandbox_id.clone(),
                path: info.path.clone(),
                format: pb::ArchiveFormat::Tar.into(),
            })
            .await?
            .into_inner();
        std::fs::create_dir_all(target)
            .with_context(|| format!("cannot make {}", target.display()))?;
        let (sender, chunks) = std::sync::mpsc::sync_channel::<Bytes>(8);
        let into = target.to_path_buf();
        // tar reads synchronously: unpack on a blocking thread as chunks
        // arrive. unpack refuses entries that would land outside `into`.
        let unpacker = tokio::task::spawn_blocking(move || {
            let mut archive = tar::Archive::new(ChunkReader {
                chunks,
                current: Bytes::new(),
            });
            archive.set_preserve_permissions(true);
            archive
                .unpack(&into)
                .with_context(|| format!("cannot unpack into {}", into.display()))
        });
        let mut received = 0u64;
        let mut progress = Progress::new(self.progress, 0);
        while let Some(message) = stream.message().await? {
            received += message.chunk.len() as u64;
            progress.add(message.chunk.len() as u64);
            if sender.send(message.chunk).is_err() {
                break;
            }
        }
        drop(sender);
        progress.done();
        unpacker.await??;
        println!(
            "{} -> {}: {received} bytes of tar",
            info.path,
            target.display()
        );
        Ok(())
    }
}

/// The bytes of the regular files under `root`, for the progress line.
fn tree_size(root: &Path) -> u64 {
    let mut total = 0;
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => folders.push(entry.path()),
                Ok(kind) if kind.is_file() => {
                    total += entry.metadata().map_or(0, |meta| meta.len());
                }
                _ => {}
            }
        }
    }
    total
}

/// The tar stream, cut into UploadArchive chunks.
struct ChunkWriter {
    sender: mpsc::Sender<pb::UploadArchiveRequest>,
    buffer: Vec<u8>,
    progress: Progress,
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = bytes.len().min(CHUNK - self.buffer.len());
        self.buffer.extend_from_slice(&bytes[..n]);
        if self.buffer.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        self.progress.add(chunk.len() as u64);
        let message = pb::UploadArchiveRequest {
            request: Some(pb::upload_archive_request::Request::Chunk(chunk.into())),
        };
        self.sender.blocking_send(message).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the server ended the upload",
            )
        })
    }
}

/// The DownloadArchive chunks, read as one stream.
struct ChunkReader {
    chunks: std::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, into: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.recv() {
                Ok(chunk) => self.current = chunk,
                Err(_) => return Ok(0),
            }
        }
        let n = into.len().min(self.current.len());
        into[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandbox_side_is_named_before_a_colon() {
        let sandbox = |sandbox: &str, path: &str| Place::Sandbox {
            sandbox: sandbox.into(),
            path: path.into(),
        };
        assert_eq!(place("dev:/work/src"), sandbox("dev", "/work/src"));
        assert_eq!(place("sbx_01:notes"), sandbox("sbx_01", "notes"));
        assert_eq!(place("dev:"), sandbox("dev", "."));
        assert_eq!(place("./a:b"), Place::Local("./a:b".into()));
        assert_eq!(place("/tmp/x"), Place::Local("/tmp/x".into()));
        assert_eq!(place(":x"), Place::Local(":x".into()));
    }
}
