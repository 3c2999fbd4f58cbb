//! Files written beside their destination and put in place only when
//! complete, so that a broken transfer never leaves half a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::Status;

use super::paths::{ensure_dir, io_status};
use super::root::{Kind, Root};

/// A file being written under a temporary name next to its destination;
/// removed when dropped unless committed, so a failed or abandoned transfer
/// leaves nothing behind.
pub struct Staged {
    root: Arc<Root>,
    temp: PathBuf,
    committed: bool,
}

impl Staged {
    /// A new temporary file beside `destination`.
    pub fn create(
        root: Arc<Root>,
        destination: &Path,
        mode: u32,
    ) -> Result<(Self, std::fs::File), Status> {
        let parent = destination.parent().unwrap_or(Path::new("/"));
        let temp = parent.join(format!(
            ".paddock-partial-{}",
            uuid::Uuid::now_v7().simple()
        ));
        let file = root
            .create_new(&temp, mode)
            .map_err(|e| io_status(destination, e))?;
        root.set_mode(&temp, mode)
            .map_err(|e| io_status(destination, e))?;
        Ok((
            Self {
                root,
                temp,
                committed: false,
            },
            file,
        ))
    }

    /// Puts the file at `destination`: replacing what is there with
    /// `overwrite`, otherwise only if nothing is (ALREADY_EXISTS). A file it
    /// replaced may live on under a second, hidden name in the returned
    /// [`Replaced`], removed when that is dropped: freeing a large file's
    /// blocks happens when its last name goes, which would otherwise be
    /// inside the rename (31 ms for 256 MiB here), so a caller may answer
    /// first and drop it after.
    pub fn commit(
        mut self,
        destination: &Path,
        overwrite: bool,
    ) -> Result<Option<Replaced>, Status> {
        let mut replaced = None;
        if overwrite {
            if let Ok(meta) = self.root.stat(destination) {
                if meta.kind == Kind::Dir {
                    return Err(Status::failed_precondition(format!(
                        "{} is a directory, not a file",
                        destination.display()
                    )));
                }
                if meta.kind == Kind::File {
                    let second = self.temp.with_file_name(format!(
                        ".paddock-replaced-{}",
                        uuid::Uuid::now_v7().simple()
                    ));
                    if self.root.hard_link(destination, &second).is_ok() {
                        replaced = Some(Replaced {
                            root: self.root.clone(),
                            path: second,
                        });
                    }
                }
            }
            self.root
                .rename(&self.temp, destination)
                .map_err(|e| io_status(destination, e))?;
        } else {
            // A link fails when the name is taken: an atomic "rename unless
            // it exists".
            self.root
                .hard_link(&self.temp, destination)
                .map_err(|e| io_status(destination, e))?;
            let _ = self.root.remove_file(&self.temp);
        }
        self.committed = true;
        Ok(replaced)
    }
}

/// The file a commit replaced, under a hidden second name; removed when
/// dropped.
pub struct Replaced {
    root: Arc<Root>,
    path: PathBuf,
}

impl Drop for Replaced {
    fn drop(&mut self) {
        let _ = self.root.remove_file(&self.path);
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = self.root.remove_file(&self.temp);
        }
    }
}

/// Checks where a new file goes: makes its parents on request, refuses a
/// directory there, and an existing file without `overwrite`.
pub(super) fn prepare_destination(
    root: &Root,
    path: &Path,
    create_parents: bool,
    overwrite: bool,
) -> Result<(), Status> {
    let Some(parent) = path.parent() else {
        return Err(Status::failed_precondition("/ is a directory, not a file"));
    };
    if create_parents {
        ensure_dir(root, parent)?;
    }
    match root.stat(path) {
        Ok(meta) if meta.kind == Kind::Dir => Err(Status::failed_precondition(format!(
            "{} is a directory, not a file",
            path.display()
        ))),
        Ok(_) if !overwrite => Err(Status::already_exists(format!(
            "{} exists already; set overwrite to replace it",
            path.display()
        ))),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The parent must be a directory we may write in.
            match root.stat_follow(parent) {
                Ok(meta) if meta.kind == Kind::Dir => Ok(()),
                Ok(_) => Err(Status::failed_precondition(format!(
                    "{} is not a directory",
                    parent.display()
                ))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(Status::not_found(format!(
                        "{}: no such directory (create_parents is false; leave it unset to \
                         make it)",
                        parent.display()
                    )))
                }
                Err(e) => Err(io_status(parent, e)),
            }
        }
        Err(e) => Err(io_status(path, e)),
    }
}
