//! Finds a command's program on its PATH with `stat`, before the spawn, so
//! that the spawn makes one `execve` instead of one failed `execve` per
//! PATH entry before the one that holds the program (what `execvp` does:
//! five of them for `true` under the default PATH).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file `program` names, searched as `execvp` searches: as it is when
/// it holds a '/', else in each entry of `path` in order (an empty entry
/// is the working directory `cwd`, as is a relative entry's base), taking
/// the first regular file that `as_user` (uid, gid; `None`: root) may
/// execute. `None` when no entry holds one: the spawn then searches as
/// before, so its error is the one execvp gives.
pub fn find(program: &str, path: &str, cwd: &Path, as_user: Option<(u32, u32)>) -> Option<PathBuf> {
    if program.contains('/') || program.is_empty() {
        return None;
    }
    path.split(':').find_map(|entry| {
        let dir = if entry.is_empty() {
            cwd
        } else {
            Path::new(entry)
        };
        let candidate = if dir.is_absolute() {
            dir.join(program)
        } else {
            cwd.join(dir).join(program)
        };
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && executable(&meta, as_user)).then_some(candidate)
    })
}

/// Whether `as_user` may execute the file: root when any execute bit is
/// set, others through the owner, group or other bits that apply to them.
fn executable(meta: &std::fs::Metadata, as_user: Option<(u32, u32)>) -> bool {
    let mode = meta.permissions().mode();
    match as_user {
        None | Some((0, _)) => mode & 0o111 != 0,
        Some((uid, _)) if uid == meta.uid() => mode & 0o100 != 0,
        Some((_, gid)) if gid == meta.gid() => mode & 0o010 != 0,
        Some(_) => mode & 0o001 != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &Path, mode: u32) {
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn finds_the_first_executable_file_as_execvp_would() {
        let root = tempfile::tempdir().unwrap();
        let [a, b, c] = ["a", "b", "c"].map(|name| root.path().join(name));
        for dir in [&a, &b, &c] {
            std::fs::create_dir(dir).unwrap();
        }
        std::fs::create_dir(a.join("tool")).unwrap(); // a directory: skipped
        file(&b.join("tool"), 0o644); // not executable: skipped
        file(&c.join("tool"), 0o755);
        let path = format!("{}:{}:{}", a.display(), b.display(), c.display());
        assert_eq!(find("tool", &path, root.path(), None), Some(c.join("tool")));
        assert_eq!(find("missing", &path, root.path(), None), None);
        assert_eq!(
            find("./tool", &path, root.path(), None),
            None,
            "a path is used as it is"
        );

        // Empty and relative entries start at the working directory.
        assert_eq!(find("tool", ":", &c, None), Some(c.join("tool")));
        assert_eq!(find("tool", "c", root.path(), None), Some(c.join("tool")));

        // Another user: only the bits that apply to them count.
        let me = (unsafe { libc::geteuid() }, unsafe { libc::getegid() });
        file(&c.join("owners"), 0o700);
        let own = c.display().to_string();
        assert_eq!(
            find("owners", &own, root.path(), Some((me.0 + 1, me.1 + 1))),
            None
        );
        assert_eq!(
            find("owners", &own, root.path(), Some((me.0, me.1 + 1))),
            Some(c.join("owners"))
        );
    }
}
