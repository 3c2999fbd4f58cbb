//! Whole trees as tar streams (optionally gzip), packed and unpacked on a
//! blocking thread that trades chunks with the gRPC stream through a small
//! channel, so a tree of any size passes with a few chunks in memory.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status, Streaming};

use super::limits::{CHUNK_BYTES, Chunks, MAX_UPLOAD_CHUNK_BYTES};
use super::ops;
use super::paths::{ensure_dir, io_status, resolve};
use super::root::{Kind, Root};
use crate::pb;

/// Unpacks an uploaded archive into its directory.
pub async fn upload(
    root: Arc<Root>,
    workdir: &str,
    mut inbound: Streaming<pb::UploadArchiveRequest>,
) -> Result<Response<pb::UploadArchiveResponse>, Status> {
    use pb::upload_archive_request::Request as R;
    let Some(pb::UploadArchiveRequest {
        request: Some(R::Header(header)),
    }) = inbound.message().await?
    else {
        return Err(Status::invalid_argument(
            "the first UploadArchive message must be the header",
        ));
    };
    let destination = resolve(workdir, "path", &header.path)?;
    let gzip = format_is_gzip(header.format)?;
    let (sender, receiver) = mpsc::channel::<bytes::Bytes>(4);
    let reader = ChannelReader {
        receiver,
        pending: bytes::Bytes::new(),
        at: 0,
    };
    let unpacking = tokio::task::spawn_blocking(move || {
        unpack(&root, &destination, gzip, header.overwrite, reader)
    });
    // Feed the unpacker; it ends early on a bad archive.
    let fed = loop {
        match inbound.message().await {
            Ok(Some(pb::UploadArchiveRequest {
                request: Some(R::Chunk(chunk)),
            })) => {
                if chunk.len() > MAX_UPLOAD_CHUNK_BYTES {
                    break Err(Status::invalid_argument(format!(
                        "chunk: at most {MAX_UPLOAD_CHUNK_BYTES} bytes each"
                    )));
                }
                if sender.send(chunk).await.is_err() {
                    break Ok(());
                }
            }
            Ok(Some(pb::UploadArchiveRequest {
                request: Some(R::Header(_)),
            })) => {
                break Err(Status::invalid_argument(
                    "an UploadArchive has one header, in its first message",
                ));
            }
            Ok(Some(_)) => {}
            Ok(None) => break Ok(()),
            Err(status) => break Err(status),
        }
    };
    drop(sender);
    let unpacked = unpacking
        .await
        .map_err(|e| Status::internal(format!("unpacking failed: {e}")))?;
    fed?;
    let (entries, bytes) = unpacked?;
    Ok(Response::new(pb::UploadArchiveResponse { entries, bytes }))
}

fn format_is_gzip(format: i32) -> Result<bool, Status> {
    match pb::ArchiveFormat::try_from(format) {
        Ok(pb::ArchiveFormat::Unspecified | pb::ArchiveFormat::Tar) => Ok(false),
        Ok(pb::ArchiveFormat::TarGzip) => Ok(true),
        Err(_) => Err(Status::invalid_argument(format!(
            "format: {format} is not an ArchiveFormat"
        ))),
    }
}

/// An archive entry's path as a relative path with only plain parts;
/// INVALID_ARGUMENT for one that is absolute or climbs with `..`.
fn entry_path(raw: &Path) -> Result<PathBuf, Status> {
    let mut clean = PathBuf::new();
    for part in raw.components() {
        match part {
            Component::Normal(name) => clean.push(name),
            Component::CurDir => {}
            _ => {
                return Err(Status::invalid_argument(format!(
                    "the archive entry {:?} would land outside its directory",
                    raw.display().to_string()
                )));
            }
        }
    }
    Ok(clean)
}

/// Unpacks entry by entry; returns how many entries and content bytes.
fn unpack(
    root: &Root,
    destination: &Path,
    gzip: bool,
    overwrite: bool,
    reader: ChannelReader,
) -> Result<(i64, i64), Status> {
    let broken =
        |e: io::Error| Status::invalid_argument(format!("the archive cannot be read: {e}"));
    ensure_dir(root, destination)?;
    let reader: Box<dyn Read> = if gzip {
        Box::new(GzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(reader);
    let (mut entries, mut bytes) = (0i64, 0i64);
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let relative = entry_path(&entry.path().map_err(broken)?)?;
        if relative.as_os_str().is_empty() {
            continue; // The directory itself.
        }
        let target = destination.join(&relative);
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let kind = entry.header().entry_type();
        if let Some(parent) = target.parent() {
            ensure_dir(root, parent)?;
        }
        match kind {
            tar::EntryType::Directory => match root.make_dir(&target, mode | 0o700, false) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_status(&target, e)),
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                make_room(root, &target, overwrite)?;
                let mut file = root
                    .create_new(&target, mode)
                    .map_err(|e| io_status(&target, e))?;
                bytes += io::copy(&mut entry, &mut file).map_err(broken)? as i64;
            }
            tar::EntryType::Symlink => {
                let link = entry.link_name().map_err(broken)?.ok_or_else(|| {
                    Status::invalid_argument("a symbolic link entry has no target")
                })?;
                make_room(root, &target, overwrite)?;
                root.symlink(&link, &target)
                    .map_err(|e| io_status(&target, e))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(broken)?
                    .ok_or_else(|| Status::invalid_argument("a hard link entry has no target"))?;
                let source = destination.join(entry_path(&link)?);
                make_room(root, &target, overwrite)?;
                root.hard_link(&source, &target)
                    .map_err(|e| io_status(&target, e))?;
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "the archive entry {} is a {other:?}; only files, directories and links unpack",
                    relative.display()
                )));
            }
        }
        entries += 1;
    }
    Ok((entries, bytes))
}

/// Clears the way for a new entry at `target`: nothing there, or a file or
/// link to replace with `overwrite`.
fn make_room(root: &Root, target: &Path, overwrite: bool) -> Result<(), Status> {
    match root.stat(target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_status(target, e)),
        Ok(meta) if meta.kind == Kind::Dir => Err(Status::failed_precondition(format!(
            "{} is a directory, not a file",
            target.display()
        ))),
        Ok(_) if !overwrite => Err(Status::already_exists(format!(
            "{} exists already; set overwrite to replace it",
            target.display()
        ))),
        Ok(_) => root.remove_file(target).map_err(|e| io_status(target, e)),
    }
}

/// The uploaded chunks as one byte stream, read on a blocking thread.
struct ChannelReader {
    receiver: mpsc::Receiver<bytes::Bytes>,
    pending: bytes::Bytes,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            match self.receiver.blocking_recv() {
                Some(chunk) => {
                    self.pending = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Packs a directory (or one file) as an archive stream.
pub async fn download(
    root: Arc<Root>,
    workdir: &str,
    request: pb::DownloadArchiveRequest,
) -> Result<Response<Chunks<pb::DownloadArchiveResponse>>, Status> {
    let path = resolve(workdir, "path", &request.path)?;
    let gzip = format_is_gzip(request.format)?;
    let meta = {
        let path = path.clone();
        let root = root.clone();
        tokio::task::spawn_blocking(move || {
            root.stat_follow(&path).map_err(|e| io_status(&path, e))
        })
        .await
        .map_err(|e| Status::internal(format!("file work failed: {e}")))??
    };
    let (sender, receiver) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            sender: sender.clone(),
            buffer: Vec::with_capacity(CHUNK_BYTES),
        };
        let packed = if gzip {
            pack(
                &root,
                &path,
                meta.kind,
                GzEncoder::new(writer, Compression::fast()),
            )
            .and_then(|encoder| encoder.finish().map_err(|e| io_status(&path, e)))
            .and_then(|mut writer| writer.flush().map_err(|e| io_status(&path, e)))
        } else {
            pack(&root, &path, meta.kind, writer)
                .and_then(|mut writer| writer.flush().map_err(|e| io_status(&path, e)))
        };
        if let Err(status) = packed {
            let _ = sender.blocking_send(Err(status));
        }
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
}

/// Writes the tar of `path` into `writer` and hands the writer back.
fn pack<W: Write>(root: &Root, path: &Path, kind: Kind, writer: W) -> Result<W, Status> {
    let mut builder = tar::Builder::new(writer);
    let failed = |e: io::Error| io_status(path, e);
    if kind == Kind::File {
        let name = path.file_name().map(PathBuf::from).unwrap_or_default();
        append(root, &mut builder, path, &name).map_err(failed)?;
    } else {
        let mut error = None;
        ops::walk_all(root, path, &mut |full, relative, _| match append(
            root,
            &mut builder,
            full,
            relative,
        ) {
            Ok(()) => true,
            Err(e) => {
                error = Some(io_status(full, e));
                false
            }
        })?;
        if let Some(error) = error {
            return Err(error);
        }
    }
    builder.into_inner().map_err(failed)
}

/// Adds one path, named `name` in the archive.
fn append<W: Write>(
    root: &Root,
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
) -> io::Result<()> {
    let meta = root.stat(path)?;
    let mut header = tar::Header::new_gnu();
    header.set_mode(meta.mode);
    header.set_mtime(
        meta.mtime
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    match meta.kind {
        Kind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            builder.append_data(&mut header, name, io::empty())
        }
        Kind::File => {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.size);
            let file = root.open_read(path)?;
            // Never more than the size announced, should the file grow.
            builder.append_data(&mut header, name, file.take(meta.size))
        }
        Kind::Symlink => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            let target = root.read_link(path)?;
            builder.append_link(&mut header, name, target)
        }
        // Devices, FIFOs and sockets have no content to carry.
        Kind::Other => Ok(()),
    }
}

/// Bytes written become 256 KiB chunks on the response stream; a gone
/// caller makes writes fail, which stops the packing.
struct ChannelWriter {
    sender: mpsc::Sender<Result<pb::DownloadArchiveResponse, Status>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.sender
            .blocking_send(Ok(pb::DownloadArchiveResponse {
                chunk: chunk.into(),
            }))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the caller went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_BYTES - self.buffer.len());
        self.buffer.extend_from_slice(&data[..n]);
        if self.buffer.len() == CHUNK_BYTES {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
