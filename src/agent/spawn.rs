//! Starts a command's process with `posix_spawn`, its stdio on new pipes,
//! in a process group of its own. glibc's `posix_spawn` starts the child
//! with `clone(CLONE_VM | CLONE_VFORK)`: the agent's memory is neither
//! copied nor write-protected, as a `fork` does before the `exec`. The
//! standard library's `Command` forks whenever a working directory is set
//! in the static agent (it finds `posix_spawn_file_actions_addchdir_np`
//! only through `dlsym`), so every command paid for a fork and for the
//! copy-on-write faults that follow it.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A process just started, and the agent's ends of its stdio pipes.
pub struct Spawned {
    /// Its pid, which is also its process group's id.
    pub pid: i32,
    /// The write end of its stdin.
    pub stdin: OwnedFd,
    /// The read end of its stdout.
    pub stdout: OwnedFd,
    /// The read end of its stderr.
    pub stderr: OwnedFd,
}

/// Starts `program` (a path, absolute or relative to `cwd`) with `argv` (its
/// `argv[0]` as given) and exactly `env`, in `cwd`, as the agent's user, in a
/// new process group, with SIGPIPE at its default and no signal blocked.
/// The errors are those of the `exec` or `chdir` that failed (ENOENT,
/// EACCES…), or InvalidInput for a NUL byte in any string.
pub fn spawn_piped(
    program: &Path,
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
) -> std::io::Result<Spawned> {
    let program = c_string(program.as_os_str().as_bytes())?;
    let cwd = c_string(cwd.as_os_str().as_bytes())?;
    let argv: Vec<CString> = argv
        .iter()
        .map(|arg| c_string(arg.as_bytes()))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = env
        .iter()
        .map(|(key, value)| c_string(format!("{key}={value}").as_bytes()))
        .collect::<Result<_, _>>()?;
    let argv_ptrs = null_terminated(&argv);
    let env_ptrs = null_terminated(&env);

    let (child_stdin, stdin) = pipe()?;
    let (stdout, child_stdout) = pipe()?;
    let (stderr, child_stderr) = pipe()?;

    let mut pid: libc::pid_t = 0;
    // SAFETY: the attributes and file actions are initialised before use and
    // destroyed on every path; every pointer handed to posix_spawn points
    // into a CString or a null-terminated array that outlives the call.
    let rc = unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut actions))?;
        if let Err(error) = check(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut actions);
            return Err(error);
        }
        let prepared = (|| {
            for (fd, target) in [(&child_stdin, 0), (&child_stdout, 1), (&child_stderr, 2)] {
                check(libc::posix_spawn_file_actions_adddup2(
                    &mut actions,
                    fd.as_raw_fd(),
                    target,
                ))?;
            }
            check(libc::posix_spawn_file_actions_addchdir_np(
                &mut actions,
                cwd.as_ptr(),
            ))?;
            let mut no_signals: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut no_signals);
            check(libc::posix_spawnattr_setsigmask(&mut attr, &no_signals))?;
            // The agent ignores SIGPIPE (as Rust programs do); an ignored
            // signal stays ignored across exec unless reset here.
            let mut defaults: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut defaults);
            libc::sigaddset(&mut defaults, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigdefault(&mut attr, &defaults))?;
            check(libc::posix_spawnattr_setpgroup(&mut attr, 0))?;
            let flags = libc::POSIX_SPAWN_SETPGROUP
                | libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF;
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                flags as libc::c_short,
            ))?;
            Ok::<_, std::io::Error>(())
        })();
        let rc = match prepared {
            Ok(()) => libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                &actions,
                &attr,
                argv_ptrs.as_ptr(),
                env_ptrs.as_ptr(),
            ),
            Err(error) => error.raw_os_error().unwrap_or(libc::EINVAL),
        };
        libc::posix_spawnattr_destroy(&mut attr);
        libc::posix_spawn_file_actions_destroy(&mut actions);
        rc
    };
    check(rc)?;
    Ok(Spawned {
        pid,
        stdin,
        stdout,
        stderr,
    })
}

fn check(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc))
    }
}

fn c_string(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{:?} holds a NUL byte",
                OsStr::from_bytes(bytes.split(|b| *b == 0).next().unwrap_or_default())
            ),
        )
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// A pipe whose two ends close on exec: (read end, write end). The child's
/// ends are duplicated onto its stdio, which does not close.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two open fds that are now owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
