//! The filesystem the agent's file operations see.
//!
//! On the process provider a sandbox's files live in a directory of the host:
//! every path is resolved beneath it by `cap-std` (openat2 with
//! RESOLVE_BENEATH where the kernel has it), so `..`, absolute symbolic
//! links and links that climb out are refused, checked by the kernel at each
//! step rather than by looking at strings. In a container the agent's own
//! "/" is the sandbox's, the container is the boundary, and paths are used
//! as they are (absolute links inside images, such as Debian's alternatives,
//! must work there).

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, MetadataExt, OpenOptions, OpenOptionsExt};

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// What the file operations need to know of a path.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    pub mtime: SystemTime,
}

/// The root all paths resolve in.
#[derive(Debug)]
pub enum Root {
    /// Beneath this directory, enforced.
    Beneath(Dir),
    /// The agent's whole filesystem (a container's). What the agent makes
    /// is given to `owner` (uid, gid) when set: the sandbox's user, while the
    /// agent runs as root.
    Whole { owner: Option<(u32, u32)> },
}

impl Root {
    /// Paths resolve beneath `dir`.
    pub fn beneath(dir: &Path) -> io::Result<Self> {
        Ok(Self::Beneath(Dir::open_ambient_dir(
            dir,
            ambient_authority(),
        )?))
    }

    /// `path` (absolute, normalised, in the sandbox) as this root takes it.
    fn local(&self, path: &Path) -> PathBuf {
        match self {
            Self::Beneath(_) => {
                let relative = path.strip_prefix("/").unwrap_or(path);
                if relative.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    relative.to_path_buf()
                }
            }
            Self::Whole { .. } => path.to_path_buf(),
        }
    }

    /// Opens a file for reading, following links.
    pub fn open_read(&self, path: &Path) -> io::Result<File> {
        let local = self.local(path);
        match self {
            Self::Beneath(dir) => dir.open(local).map(|f| f.into_std()),
            Self::Whole { .. } => File::open(local),
        }
    }

    /// Creates a new file (never an existing one) for writing.
    pub fn create_new(&self, path: &Path, mode: u32) -> io::Result<File> {
        let local = self.local(path);
        match self {
            Self::Beneath(dir) => {
                let mut options = OpenOptions::new();
                options.write(true).create_new(true).mode(mode);
                dir.open_with(local, &options).map(|f| f.into_std())
            }
            Self::Whole { owner } => {
                use std::os::unix::fs::OpenOptionsExt as _;
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&local)?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::fchown(&file, Some(*uid), Some(*gid))?;
                }
                Ok(file)
            }
        }
    }

    /// Describes a path, not following a final link.
    pub fn stat(&self, path: &Path) -> io::Result<Meta> {
        let local = self.local(path);
        match self {
            Self::Beneath(dir) => {
                let m = dir.symlink_metadata(local)?;
                let kind = kind_of(m.is_dir(), m.is_file(), m.file_type().is_symlink());
                Ok(Meta {
                    kind,
                    size: m.len(),
                    mode: m.mode() & 0o7777,
                    mtime: m
                        .modified()
                        .map(|t| t.into_std())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                })
            }
            Self::Whole { .. } => meta_of(&std::fs::symlink_metadata(local)?),
        }
    }

    /// Describes a path, following links.
    pub fn stat_follow(&self, path: &Path) -> io::Result<Meta> {
        match self {
            Self::Beneath(_) => meta_of(&self.open_read(path)?.metadata()?),
            Self::Whole { .. } => meta_of(&std::fs::metadata(path)?),
        }
    }

    /// Where a link points, as written in it.
    pub fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        let local = self.local(path);
        match self {
            Self::Beneath(dir) => dir.read_link_contents(local),
            Self::Whole { .. } => std::fs::read_link(local),
        }
    }

    /// A directory's entry names, sorted.
    pub fn list(&self, path: &Path) -> io::Result<Vec<OsString>> {
        let local = self.local(path);
        let mut names: Vec<OsString> = match self {
            Self::Beneath(dir) => dir
                .read_dir(local)?
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?,
            Self::Whole { .. } => std::fs::read_dir(local)?
                .map(|entry| entry.map(|e| e.file_name()))
                .collect::<io::Result<_>>()?,
        };
        names.sort();
        Ok(names)
    }

    /// Makes one directory, or it and its missing parents.
    pub fn make_dir(&self, path: &Path, mode: u32, parents: bool) -> io::Result<()> {
        let local = self.local(path);
        match self {
            Self::Beneath(dir) => {
                let mut builder = DirBuilder::new();
                builder.recursive(parents).mode(mode);
                dir.create_dir_with(local, &builder)
            }
            Self::Whole { owner } => {
                use std::os::unix::fs::DirBuilderExt as _;
                // The directories this call makes, deepest first, to give
                // them to the owner afterwards.
                let missing: Vec<PathBuf> = match owner {
                    Some(_) => local
                        .ancestors()
                        .take_while(|dir| std::fs::symlink_metadata(dir).is_err())
                        .map(Path::to_path_buf)
                        .collect(),
                    None => Vec::new(),
                };
                std::fs::DirBuilder::new()
                    .recursive(parents)
                    .mode(mode)
                    .create(&local)?;
                if let Some((uid, gid)) = owner {
                    for dir in &missing {
                        std::os::unix::fs::lchown(dir, Some(*uid), Some(*gid))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Removes a file or link.
    pub fn remove_file(&self, path: &Path) -> io::Result<()> {
        let local = self.local(path);
        match self {
            Self::Beneath(dir) => dir.remove_file(local),
            Self::Whole { .. } => std::fs::remove_file(local),
        }
    }

    /// Removes an empty directory, or with `all` a whole tree.
    pub fn remove_dir(&self, path: &Path, all: bool) -> io::Result<()> {
        let local = self.local(path);
        match (self, all) {
            (Self::Beneath(dir), false) => dir.remove_dir(local),
            (Self::Beneath(dir), true) => dir.remove_dir_all(local),
            (Self::Whole { .. }, false) => std::fs::remove_dir(local),
            (Self::Whole { .. }, true) => std::fs::remove_dir_all(local),
        }
    }

    /// Renames `from` to `to`, replacing a file or empty directory there.
    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (self.local(from), self.local(to));
        match self {
            Self::Beneath(dir) => dir.rename(from, dir, to),
            Self::Whole { .. } => std::fs::rename(from, to),
        }
    }

    /// Links `to` to the file `from`; fails when `to` exists (which makes it
    /// an atomic "rename unless taken").
    pub fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (self.local(from), self.local(to));
        match self {
            Self::Beneath(dir) => dir.hard_link(from, dir, to),
            Self::Whole { .. } => std::fs::hard_link(from, to),
        }
    }

    /// Makes a symbolic link at `link` holding `target`.
    pub fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        let local = self.local(link);
        match self {
            Self::Beneath(dir) => dir.symlink(target, local),
            Self::Whole { owner } => {
                std::os::unix::fs::symlink(target, &local)?;
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::lchown(&local, Some(*uid), Some(*gid))?;
                }
                Ok(())
            }
        }
    }

    /// Sets a path's permission bits exactly (creation modes pass through
    /// the umask).
    pub fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        let local = self.local(path);
        match self {
            Self::Beneath(dir) => {
                use cap_std::fs::PermissionsExt;
                dir.set_permissions(local, cap_std::fs::Permissions::from_mode(mode))
            }
            Self::Whole { .. } => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(local, std::fs::Permissions::from_mode(mode))
            }
        }
    }
}

fn kind_of(is_dir: bool, is_file: bool, is_symlink: bool) -> Kind {
    if is_symlink {
        Kind::Symlink
    } else if is_dir {
        Kind::Dir
    } else if is_file {
        Kind::File
    } else {
        Kind::Other
    }
}

fn meta_of(m: &std::fs::Metadata) -> io::Result<Meta> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(Meta {
        kind: kind_of(m.is_dir(), m.is_file(), m.file_type().is_symlink()),
        size: m.len(),
        mode: m.mode() & 0o7777,
        mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    })
}
