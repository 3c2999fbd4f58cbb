//! Paths as callers give them, resolved to sandbox paths, and what is at
//! them: I/O errors as the statuses a caller can act on, file info.

use std::path::{Component, Path, PathBuf};

use tonic::Status;

use super::limits::MAX_PATH_BYTES;
use super::root::{Kind, Meta, Root};
use crate::pb;

/// `path` (absolute, or relative to `workdir`) as a normalised absolute
/// sandbox path. PERMISSION_DENIED when `..` climbs above "/".
pub fn resolve(workdir: &str, field: &str, path: &str) -> Result<PathBuf, Status> {
    if path.is_empty() {
        return Err(Status::invalid_argument(format!("{field}: is required")));
    }
    if path.len() > MAX_PATH_BYTES || path.contains('\0') {
        return Err(Status::invalid_argument(format!(
            "{field}: a path is at most {MAX_PATH_BYTES} bytes with no NUL byte"
        )));
    }
    let joined = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        Path::new(workdir).join(path)
    };
    let mut normal = PathBuf::from("/");
    for part in joined.components() {
        match part {
            Component::Normal(name) => normal.push(name),
            Component::ParentDir => {
                if !normal.pop() {
                    return Err(Status::permission_denied(format!(
                        "{field}: {path:?} leads out of the sandbox"
                    )));
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(normal)
}

/// An I/O error on `path` as the status a caller can act on.
pub fn io_status(path: &Path, error: std::io::Error) -> Status {
    use std::io::ErrorKind as K;
    let shown = path.display();
    match (error.kind(), error.raw_os_error()) {
        (K::NotFound, _) => Status::not_found(format!("{shown}: no such file or directory")),
        (K::AlreadyExists, _) => Status::already_exists(format!(
            "{shown} exists already; set overwrite to replace it"
        )),
        (K::PermissionDenied, Some(libc::EACCES | libc::EPERM)) => {
            Status::permission_denied(format!("{shown}: permission denied"))
        }
        // cap-std's answer to a path or link that leaves the sandbox.
        (K::PermissionDenied, _) | (_, Some(libc::EXDEV)) => Status::permission_denied(format!(
            "{shown}: the path leads out of the sandbox ({error})"
        )),
        (_, Some(libc::ENOTDIR)) => {
            Status::failed_precondition(format!("{shown}: a part of the path is not a directory"))
        }
        (_, Some(libc::EISDIR)) => {
            Status::failed_precondition(format!("{shown} is a directory, not a file"))
        }
        (_, Some(libc::ENOTEMPTY)) => {
            Status::failed_precondition(format!("{shown} is a directory that is not empty"))
        }
        (_, Some(libc::ELOOP)) => {
            Status::failed_precondition(format!("{shown}: too many levels of symbolic links"))
        }
        (_, Some(libc::ENOSPC | libc::EDQUOT)) => {
            Status::resource_exhausted(format!("{shown}: the sandbox's disk is full"))
        }
        (_, Some(libc::EROFS)) => {
            Status::failed_precondition(format!("{shown} is on a read-only filesystem"))
        }
        (_, Some(libc::ENAMETOOLONG)) => Status::invalid_argument(format!(
            "{shown}: a name in the path is too long (at most 255 bytes each)"
        )),
        (_, Some(libc::EINVAL)) => {
            Status::invalid_argument(format!("{shown}: not possible for this path ({error})"))
        }
        (_, Some(libc::EBUSY | libc::ETXTBSY)) => {
            Status::failed_precondition(format!("{shown} is busy ({error})"))
        }
        (_, Some(libc::EMLINK)) => {
            Status::failed_precondition(format!("{shown}: too many links ({error})"))
        }
        _ => Status::internal(format!("{shown}: {error}")),
    }
}

/// A path's description for the API.
pub fn file_info(root: &Root, path: &Path, meta: &Meta) -> pb::FileInfo {
    let link_target = if meta.kind == Kind::Symlink {
        root.read_link(path)
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    pb::FileInfo {
        path: path.to_string_lossy().into_owned(),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".to_owned()),
        r#type: match meta.kind {
            Kind::File => pb::FileType::File,
            Kind::Dir => pb::FileType::Directory,
            Kind::Symlink => pb::FileType::Symlink,
            Kind::Other => pb::FileType::Other,
        } as i32,
        size: i64::try_from(meta.size).unwrap_or(i64::MAX),
        mode: meta.mode,
        mtime: Some(prost_types::Timestamp::from(meta.mtime)),
        link_target,
    }
}

/// Describes `path` for the API, not following a final link.
pub fn stat_info(root: &Root, path: &Path) -> Result<pb::FileInfo, Status> {
    let meta = root.stat(path).map_err(|e| io_status(path, e))?;
    Ok(file_info(root, path, &meta))
}

/// Makes `path` and its missing parents, and checks that it now is a
/// directory beneath the root (an existing link to elsewhere is refused).
pub fn ensure_dir(root: &Root, path: &Path) -> Result<(), Status> {
    match root.make_dir(path, 0o755, true) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_status(path, e)),
    }
    match root.stat_follow(path) {
        Ok(meta) if meta.kind == Kind::Dir => Ok(()),
        Ok(_) => Err(Status::failed_precondition(format!(
            "{} is not a directory",
            path.display()
        ))),
        Err(e) => Err(io_status(path, e)),
    }
}
