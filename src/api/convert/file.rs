//! Validation of FileService requests: what the server checks before a call
//! reaches the sandbox's agent (the sandbox id, the shape of paths, modes
//! and digests). Where a path resolves, and the ranges and limits of reads,
//! are the agent's to check. Each function returns the sandbox id.

use super::fields::sandbox_id;
use crate::error::{Error, ErrorKind, Result};
use crate::pb;

/// The largest upload chunk, as the proto documents.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;
/// The longest path, as the proto documents.
const MAX_PATH_BYTES: usize = 4096;

/// A path field: given (unless `optional`), at most 4096 bytes, no NUL byte.
fn path(field: &str, value: &str, optional: bool) -> Result<()> {
    if value.is_empty() && !optional {
        return Err(Error::invalid_argument(field, "is required"));
    }
    if value.len() > MAX_PATH_BYTES || value.contains('\0') {
        return Err(Error::invalid_argument(
            field,
            format!("a path is at most {MAX_PATH_BYTES} bytes with no NUL byte"),
        ));
    }
    Ok(())
}

/// A file mode: permission bits only.
fn mode(value: u32) -> Result<()> {
    if value > 0o7777 {
        return Err(Error::invalid_argument(
            "mode",
            format!("{value:#o} has bits beyond 0o7777"),
        ));
    }
    Ok(())
}

/// An expected SHA-256: empty, or 64 hexadecimal digits.
fn sha256(value: &str) -> Result<()> {
    if !value.is_empty() && (value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(Error::invalid_argument(
            "sha256",
            "must be 64 hexadecimal digits, or empty",
        ));
    }
    Ok(())
}

/// The size of one upload chunk.
pub fn chunk(len: usize) -> Result<()> {
    if len > MAX_CHUNK_BYTES {
        return Err(Error::invalid_argument(
            "chunk",
            format!("at most {MAX_CHUNK_BYTES} bytes each"),
        ));
    }
    Ok(())
}

/// The header an upload stream must open with, from its first message.
pub fn upload_header(first: Option<pb::UploadRequest>) -> Result<pb::UploadHeader> {
    match first.and_then(|message| message.request) {
        Some(pb::upload_request::Request::Header(header)) => Ok(header),
        _ => Err(Error::new(
            ErrorKind::InvalidArgument,
            "the first Upload message must be the header",
        )),
    }
}

/// The header an archive upload stream must open with, from its first
/// message.
pub fn upload_archive_header(
    first: Option<pb::UploadArchiveRequest>,
) -> Result<pb::UploadArchiveHeader> {
    match first.and_then(|message| message.request) {
        Some(pb::upload_archive_request::Request::Header(header)) => Ok(header),
        _ => Err(Error::new(
            ErrorKind::InvalidArgument,
            "the first UploadArchive message must be the header",
        )),
    }
}

/// An Upload's header.
pub fn upload(header: &pb::UploadHeader) -> Result<String> {
    let pb::UploadHeader {
        sandbox_id: id,
        path: target,
        mode: file_mode,
        create_parents: _,
        overwrite: _,
        sha256: expected,
    } = header;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, false)?;
    mode(*file_mode)?;
    sha256(expected)?;
    Ok(id)
}

/// An UploadArchive's header.
pub fn upload_archive(header: &pb::UploadArchiveHeader) -> Result<String> {
    let pb::UploadArchiveHeader {
        sandbox_id: id,
        path: target,
        format: _,
        overwrite: _,
    } = header;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, false)?;
    Ok(id)
}

/// A Download request; the agent checks the range.
pub fn download(request: &pb::DownloadRequest) -> Result<String> {
    let pb::DownloadRequest {
        sandbox_id: id,
        path: target,
        offset: _,
        length: _,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, false)?;
    Ok(id)
}

/// A DownloadArchive request.
pub fn download_archive(request: &pb::DownloadArchiveRequest) -> Result<String> {
    let pb::DownloadArchiveRequest {
        sandbox_id: id,
        path: target,
        format: _,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, false)?;
    Ok(id)
}

/// A Stat request.
pub fn stat(request: &pb::StatRequest) -> Result<String> {
    let pb::StatRequest {
        sandbox_id: id,
        path: target,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, false)?;
    Ok(id)
}

/// A ListDir request; the agent checks depth and limit.
pub fn list_dir(request: &pb::ListDirRequest) -> Result<String> {
    let pb::ListDirRequest {
        sandbox_id: id,
        path: target,
        depth: _,
        limit: _,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, false)?;
    Ok(id)
}

/// A MakeDir request.
pub fn make_dir(request: &pb::MakeDirRequest) -> Result<String> {
    let pb::MakeDirRequest {
        sandbox_id: id,
        path: target,
        parents: _,
        mode: dir_mode,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, false)?;
    mode(*dir_mode)?;
    Ok(id)
}

/// A Remove request.
pub fn remove(request: &pb::RemoveRequest) -> Result<String> {
    let pb::RemoveRequest {
        sandbox_id: id,
        path: target,
        recursive: _,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, false)?;
    Ok(id)
}

/// A Move request.
pub fn move_request(request: &pb::MoveRequest) -> Result<String> {
    let pb::MoveRequest {
        sandbox_id: id,
        source,
        destination,
        overwrite: _,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("source", source, false)?;
    path("destination", destination, false)?;
    Ok(id)
}

/// A ReadFile request; the agent checks the lines and bytes asked for.
pub fn read_file(request: &pb::ReadFileRequest) -> Result<String> {
    let pb::ReadFileRequest {
        sandbox_id: id,
        path: target,
        offset: _,
        limit: _,
        byte_offset: _,
        byte_length: _,
        max_bytes: _,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, false)?;
    Ok(id)
}

/// A WriteFile request; the agent checks the content's size.
pub fn write_file(request: &pb::WriteFileRequest) -> Result<String> {
    let pb::WriteFileRequest {
        sandbox_id: id,
        path: target,
        content: _,
        mode: file_mode,
        create_parents: _,
        overwrite: _,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, false)?;
    mode(*file_mode)?;
    Ok(id)
}

/// An EditFile request; the agent checks the texts.
pub fn edit_file(request: &pb::EditFileRequest) -> Result<String> {
    let pb::EditFileRequest {
        sandbox_id: id,
        path: target,
        old_text: _,
        new_text: _,
        replace_all: _,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, false)?;
    Ok(id)
}

/// A FindFiles request; the path may be empty (the workdir), and the agent
/// checks the pattern and limit.
pub fn find_files(request: &pb::FindFilesRequest) -> Result<String> {
    let pb::FindFilesRequest {
        sandbox_id: id,
        path: target,
        pattern: _,
        limit: _,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, true)?;
    Ok(id)
}

/// A Grep request; the path may be empty (the workdir), and the agent
/// checks the pattern, glob and limit.
pub fn grep(request: &pb::GrepRequest) -> Result<String> {
    let pb::GrepRequest {
        sandbox_id: id,
        path: target,
        pattern: _,
        glob: _,
        ignore_case: _,
        limit: _,
    } = request;
    let id = sandbox_id("sandbox_id", id.clone())?;
    path("path", target, true)?;
    Ok(id)
}
