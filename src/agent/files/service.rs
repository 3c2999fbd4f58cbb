//! [`AgentFiles`], the agent's `paddock.v1.FileService`: each call resolved
//! against the sandbox's root and workdir and run on a blocking thread; the
//! uploads and downloads of single files are here, the rest in ops.rs and
//! archive.rs.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::limits::{CHUNK_BYTES, Chunks, MAX_SMALL_FILE_BYTES, MAX_UPLOAD_CHUNK_BYTES};
use super::paths::{file_info, io_status, resolve, stat_info};
use super::root::{Kind, Root};
use super::staged::{Staged, prepare_destination};
use super::{archive, ops};
use crate::pb;
use crate::pb::file_service_server::FileService;

/// The file service of one agent.
pub struct AgentFiles {
    root: Arc<Root>,
    workdir: String,
}

impl AgentFiles {
    /// File operations in `root`, with relative paths resolved against
    /// `workdir`.
    pub fn new(root: Root, workdir: String) -> Self {
        Self {
            root: Arc::new(root),
            workdir,
        }
    }

    fn resolve(&self, field: &str, path: &str) -> Result<PathBuf, Status> {
        resolve(&self.workdir, field, path)
    }

    /// Runs blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Root) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || work(&root))
            .await
            .map_err(|e| Status::internal(format!("file work failed: {e}")))?
    }
}

fn file_mode(mode: u32, default: u32) -> u32 {
    if mode == 0 { default } else { mode & 0o7777 }
}

#[tonic::async_trait]
impl FileService for AgentFiles {
    async fn upload(
        &self,
        request: Request<Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        use pb::upload_request::Request as R;
        let mut inbound = request.into_inner();
        let Some(pb::UploadRequest {
            request: Some(R::Header(header)),
        }) = inbound.message().await?
        else {
            return Err(Status::invalid_argument(
                "the first Upload message must be the header",
            ));
        };
        let path = self.resolve("path", &header.path)?;
        let expected = header.sha256.to_ascii_lowercase();
        let mode = file_mode(header.mode, 0o644);
        let (staged, file) = {
            let path = path.clone();
            let root = self.root.clone();
            self.blocking(move |r| {
                prepare_destination(
                    r,
                    &path,
                    header.create_parents.unwrap_or(true),
                    header.overwrite,
                )?;
                Staged::create(root, &path, mode)
            })
            .await?
        };
        // A writer thread hashes and writes while the next chunks arrive;
        // the channel holds two chunks, so memory stays flat.
        let (chunks, mut to_write) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
        let writing = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let mut file = file;
                let mut hasher = Sha256::new();
                while let Some(chunk) = to_write.blocking_recv() {
                    hasher.update(&chunk);
                    file.write_all(&chunk).map_err(|e| io_status(&path, e))?;
                }
                Ok::<_, Status>(hasher)
            })
        };
        let received = async {
            while let Some(message) = inbound.message().await? {
                match message.request {
                    Some(R::Chunk(chunk)) => {
                        if chunk.len() > MAX_UPLOAD_CHUNK_BYTES {
                            return Err(Status::invalid_argument(format!(
                                "chunk: at most {MAX_UPLOAD_CHUNK_BYTES} bytes each"
                            )));
                        }
                        if chunks.send(chunk).await.is_err() {
                            // The writer failed; its error is reported below.
                            break;
                        }
                    }
                    Some(R::Header(_)) => {
                        return Err(Status::invalid_argument(
                            "an Upload has one header, in its first message",
                        ));
                    }
                    None => {}
                }
            }
            Ok(())
        }
        .await;
        drop(chunks);
        let written = writing
            .await
            .map_err(|e| Status::internal(format!("writing the upload failed: {e}")))?;
        received?;
        let hasher = written?;
        let sha256 = crate::ids::hex(&hasher.finalize());
        if !expected.is_empty() && expected != sha256 {
            return Err(Status::invalid_argument(format!(
                "sha256: the uploaded content's sha256 is {sha256}, not the expected {expected}; \
                 nothing was written to {}",
                path.display()
            )));
        }
        let overwrite = header.overwrite;
        let (info, replaced) = self
            .blocking(move |r| {
                let replaced = staged.commit(&path, overwrite)?;
                Ok((stat_info(r, &path)?, replaced))
            })
            .await?;
        // A replaced file is freed after the answer, not before it.
        if let Some(replaced) = replaced {
            tokio::task::spawn_blocking(move || drop(replaced));
        }
        Ok(Response::new(pb::UploadResponse {
            info: Some(info),
            sha256,
        }))
    }

    type DownloadStream = Chunks<pb::DownloadResponse>;

    async fn download(
        &self,
        request: Request<pb::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let request = request.into_inner();
        let path = self.resolve("path", &request.path)?;
        if request.offset < 0 || request.length < 0 {
            return Err(Status::invalid_argument(
                "offset and length: must not be negative",
            ));
        }
        let (file, info, size) = {
            let path = path.clone();
            self.blocking(move |r| {
                let file = r.open_read(&path).map_err(|e| io_status(&path, e))?;
                let meta = r.stat_follow(&path).map_err(|e| io_status(&path, e))?;
                if meta.kind != Kind::File {
                    return Err(Status::failed_precondition(format!(
                        "{} is not a regular file",
                        path.display()
                    )));
                }
                Ok((file, file_info(r, &path, &meta), meta.size))
            })
            .await?
        };
        let offset = request.offset as u64;
        if offset > size {
            return Err(Status::out_of_range(format!(
                "offset: {offset} is past the end of {} ({size} bytes)",
                path.display()
            )));
        }
        let end = if request.length == 0 {
            size
        } else {
            size.min(offset.saturating_add(request.length as u64))
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
            if sender
                .blocking_send(Ok(pb::DownloadResponse {
                    response: Some(pb::download_response::Response::Info(info)),
                }))
                .is_err()
            {
                return;
            }
            let mut file = file;
            if let Err(e) = file.seek(SeekFrom::Start(offset)) {
                let _ = sender.blocking_send(Err(io_status(&path, e)));
                return;
            }
            let mut left = end - offset;
            while left > 0 {
                let mut chunk = vec![0u8; CHUNK_BYTES.min(left as usize)];
                match file.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        chunk.truncate(n);
                        left -= n as u64;
                        let message = pb::DownloadResponse {
                            response: Some(pb::download_response::Response::Chunk(chunk.into())),
                        };
                        if sender.blocking_send(Ok(message)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = sender.blocking_send(Err(io_status(&path, e)));
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn upload_archive(
        &self,
        request: Request<Streaming<pb::UploadArchiveRequest>>,
    ) -> Result<Response<pb::UploadArchiveResponse>, Status> {
        archive::upload(self.root.clone(), &self.workdir, request.into_inner()).await
    }

    type DownloadArchiveStream = Chunks<pb::DownloadArchiveResponse>;

    async fn download_archive(
        &self,
        request: Request<pb::DownloadArchiveRequest>,
    ) -> Result<Response<Self::DownloadArchiveStream>, Status> {
        archive::download(self.root.clone(), &self.workdir, request.into_inner()).await
    }

    async fn stat(
        &self,
        request: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        let path = self.resolve("path", &request.into_inner().path)?;
        let info = self.blocking(move |r| stat_info(r, &path)).await?;
        Ok(Response::new(pb::StatResponse { info: Some(info) }))
    }

    async fn list_dir(
        &self,
        request: Request<pb::ListDirRequest>,
    ) -> Result<Response<pb::ListDirResponse>, Status> {
        let request = request.into_inner();
        let path = self.resolve("path", &request.path)?;
        let depth = ops::bounded("depth", request.depth, 1, 32)?;
        let limit = ops::bounded("limit", request.limit, 1000, 10_000)?;
        let (entries, truncated) = self
            .blocking(move |r| ops::list_dir(r, &path, depth, limit))
            .await?;
        Ok(Response::new(pb::ListDirResponse { entries, truncated }))
    }

    async fn make_dir(
        &self,
        request: Request<pb::MakeDirRequest>,
    ) -> Result<Response<pb::MakeDirResponse>, Status> {
        let request = request.into_inner();
        let path = self.resolve("path", &request.path)?;
        let mode = file_mode(request.mode, 0o755);
        let info = self
            .blocking(move |r| {
                match r.make_dir(&path, mode, request.parents) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && request.parents => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(Status::not_found(format!(
                            "{}: the parent directory does not exist; set parents to make it",
                            path.display()
                        )));
                    }
                    Err(e) => return Err(io_status(&path, e)),
                }
                let info = stat_info(r, &path)?;
                if info.r#type != pb::FileType::Directory as i32 {
                    return Err(Status::already_exists(format!(
                        "{} exists and is not a directory",
                        path.display()
                    )));
                }
                Ok(info)
            })
            .await?;
        Ok(Response::new(pb::MakeDirResponse { info: Some(info) }))
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        let request = request.into_inner();
        let path = self.resolve("path", &request.path)?;
        if path == Path::new("/") {
            return Err(Status::invalid_argument(
                "path: the sandbox's root cannot be removed",
            ));
        }
        self.blocking(move |r| {
            let meta = r.stat(&path).map_err(|e| io_status(&path, e))?;
            let removed = if meta.kind == Kind::Dir {
                r.remove_dir(&path, request.recursive)
            } else {
                r.remove_file(&path)
            };
            removed.map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTEMPTY) => Status::failed_precondition(format!(
                    "{} is a directory that is not empty; set recursive to remove it all",
                    path.display()
                )),
                _ => io_status(&path, e),
            })
        })
        .await?;
        Ok(Response::new(pb::RemoveResponse {}))
    }

    async fn r#move(
        &self,
        request: Request<pb::MoveRequest>,
    ) -> Result<Response<pb::MoveResponse>, Status> {
        let request = request.into_inner();
        let source = self.resolve("source", &request.source)?;
        let destination = self.resolve("destination", &request.destination)?;
        let info = self
            .blocking(move |r| {
                r.stat(&source).map_err(|e| io_status(&source, e))?;
                if !request.overwrite && r.stat(&destination).is_ok() {
                    return Err(Status::already_exists(format!(
                        "{} exists already; set overwrite to replace it",
                        destination.display()
                    )));
                }
                r.rename(&source, &destination)
                    .map_err(|e| io_status(&destination, e))?;
                stat_info(r, &destination)
            })
            .await?;
        Ok(Response::new(pb::MoveResponse { info: Some(info) }))
    }

    async fn read_file(
        &self,
        request: Request<pb::ReadFileRequest>,
    ) -> Result<Response<pb::ReadFileResponse>, Status> {
        let request = request.into_inner();
        let path = self.resolve("path", &request.path)?;
        let answer = self
            .blocking(move |r| ops::read_file(r, &path, &request))
            .await?;
        Ok(Response::new(answer))
    }

    async fn write_file(
        &self,
        request: Request<pb::WriteFileRequest>,
    ) -> Result<Response<pb::WriteFileResponse>, Status> {
        let request = request.into_inner();
        let path = self.resolve("path", &request.path)?;
        if request.content.len() > MAX_SMALL_FILE_BYTES {
            return Err(Status::invalid_argument(format!(
                "content: at most {MAX_SMALL_FILE_BYTES} bytes; use Upload for larger files"
            )));
        }
        let root = self.root.clone();
        let info = self
            .blocking(move |r| {
                prepare_destination(
                    r,
                    &path,
                    request.create_parents.unwrap_or(true),
                    request.overwrite,
                )?;
                // An existing file keeps its mode unless one is given.
                let mode = match r.stat(&path) {
                    Ok(meta) if request.mode == 0 => meta.mode,
                    _ => file_mode(request.mode, 0o644),
                };
                let (staged, mut file) = Staged::create(root, &path, mode)?;
                file.write_all(&request.content)
                    .map_err(|e| io_status(&path, e))?;
                drop(file);
                staged.commit(&path, request.overwrite)?;
                stat_info(r, &path)
            })
            .await?;
        Ok(Response::new(pb::WriteFileResponse { info: Some(info) }))
    }

    async fn edit_file(
        &self,
        request: Request<pb::EditFileRequest>,
    ) -> Result<Response<pb::EditFileResponse>, Status> {
        let request = request.into_inner();
        let path = self.resolve("path", &request.path)?;
        let root = self.root.clone();
        let replacements = self
            .blocking(move |r| ops::edit_file(r, root, &path, &request))
            .await?;
        Ok(Response::new(pb::EditFileResponse { replacements }))
    }

    async fn find_files(
        &self,
        request: Request<pb::FindFilesRequest>,
    ) -> Result<Response<pb::FindFilesResponse>, Status> {
        let request = request.into_inner();
        let base = if request.path.is_empty() {
            self.resolve("path", &self.workdir)?
        } else {
            self.resolve("path", &request.path)?
        };
        let limit = ops::bounded("limit", request.limit, 1000, 10_000)?;
        let matcher = ops::glob("pattern", &request.pattern)?;
        let (paths, truncated) = self
            .blocking(move |r| ops::find_files(r, &base, &matcher, limit))
            .await?;
        Ok(Response::new(pb::FindFilesResponse { paths, truncated }))
    }

    async fn grep(
        &self,
        request: Request<pb::GrepRequest>,
    ) -> Result<Response<pb::GrepResponse>, Status> {
        let request = request.into_inner();
        let base = if request.path.is_empty() {
            self.resolve("path", &self.workdir)?
        } else {
            self.resolve("path", &request.path)?
        };
        let limit = ops::bounded("limit", request.limit, 100, 10_000)?;
        let search = ops::GrepSearch::new(&request)?;
        let answer = self
            .blocking(move |r| ops::grep(r, &base, &search, limit))
            .await?;
        Ok(Response::new(answer))
    }
}
