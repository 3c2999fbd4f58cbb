//! Who commands run as: a user given by name or number, with an optional
//! group, looked up in the sandbox's own `/etc/passwd` and `/etc/group` the
//! way the container engine reads an image's `USER`.

use std::path::Path;

/// A user to run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// The login name, when the sandbox's passwd file has one.
    pub name: Option<String>,
    /// The home directory, when the sandbox's passwd file has one.
    pub home: Option<String>,
}

impl Identity {
    /// The identity of this process.
    pub fn current() -> Self {
        // SAFETY: getuid and getgid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Self {
            uid,
            gid,
            name: None,
            home: None,
        }
    }

    /// Whether this is the same user and group as `other`.
    pub fn same_ids(&self, other: &Self) -> bool {
        self.uid == other.uid && self.gid == other.gid
    }
}

/// Resolves `spec` (`NAME`, `UID`, `NAME:GROUP`, `UID:GID`, …) against the
/// passwd and group files under `root`. A number with no passwd entry is
/// that uid with group 0, as the engine does; a name must exist. The error
/// is a sentence for the caller.
pub fn resolve(root: &Path, spec: &str) -> Result<Identity, String> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let entry = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 6)
        .find(|fields| match user.parse::<u32>() {
            Ok(uid) => fields[2].parse() == Ok(uid),
            Err(_) => fields[0] == user,
        });
    let mut identity = match (entry, user.parse::<u32>()) {
        (Some(fields), _) => Identity {
            uid: fields[2]
                .parse()
                .map_err(|_| format!("user {user:?} has a malformed entry in /etc/passwd"))?,
            gid: fields[3]
                .parse()
                .map_err(|_| format!("user {user:?} has a malformed entry in /etc/passwd"))?,
            name: Some(fields[0].to_owned()),
            home: Some(fields[5].to_owned()).filter(|home| !home.is_empty()),
        },
        (None, Ok(uid)) => Identity {
            uid,
            gid: 0,
            name: None,
            home: None,
        },
        (None, Err(_)) => {
            return Err(format!(
                "no user named {user:?} in the sandbox's /etc/passwd; give a uid instead"
            ));
        }
    };
    if let Some(group) = group {
        identity.gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
                groups
                    .lines()
                    .map(|line| line.split(':').collect::<Vec<_>>())
                    .find(|fields| fields.len() >= 3 && fields[0] == group)
                    .and_then(|fields| fields[2].parse().ok())
                    .ok_or_else(|| {
                        format!(
                            "no group named {group:?} in the sandbox's /etc/group; give a gid \
                             instead"
                        )
                    })?
            }
        };
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1001:Alice:/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:alice\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn names_and_numbers_resolve_as_the_engine_resolves_them() {
        let root = root();
        let alice = resolve(root.path(), "alice").unwrap();
        assert_eq!((alice.uid, alice.gid), (1000, 1001));
        assert_eq!(alice.home.as_deref(), Some("/home/alice"));
        assert_eq!(resolve(root.path(), "1000").unwrap(), alice);
        let grouped = resolve(root.path(), "alice:staff").unwrap();
        assert_eq!((grouped.uid, grouped.gid), (1000, 50));
        let unnamed = resolve(root.path(), "4242:7").unwrap();
        assert_eq!((unnamed.uid, unnamed.gid, unnamed.name), (4242, 7, None));
        assert_eq!(resolve(root.path(), "4242").unwrap().gid, 0);
    }

    #[test]
    fn unknown_names_are_refused_with_a_way_out() {
        let root = root();
        let error = resolve(root.path(), "mallory").unwrap_err();
        assert!(
            error.contains("no user named \"mallory\"") && error.contains("uid"),
            "{error}"
        );
        let error = resolve(root.path(), "alice:wheel").unwrap_err();
        assert!(error.contains("no group named \"wheel\""), "{error}");
    }
}
