//! The agent's child reaper. The agent is the sandbox's init (or its
//! subreaper), so it reaps every child, its commands' orphans included, and
//! hands each command's exit status to whoever waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;
use tracing::debug;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// This signal ended it.
    Signal(i32),
}

/// Waiters for children that have not ended yet, by pid.
type Table = HashMap<i32, oneshot::Sender<ExitStatus>>;

/// Reaps children and reports their exits. Cheap to clone.
#[derive(Clone, Default)]
pub struct Reaper {
    table: Arc<Mutex<Table>>,
}

impl Reaper {
    /// Starts reaping on SIGCHLD. Makes this process a child subreaper, so
    /// orphans of its commands are reaped here rather than by the host's init.
    pub fn start() -> std::io::Result<Self> {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Self::default();
        let table = reaper.table.clone();
        tokio::spawn(async move {
            loop {
                reap_all(&table);
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(reaper)
    }

    /// Starts a child with `spawn`, which returns it with its pid, and
    /// returns it with a receiver of its exit status. The table stays locked
    /// across the spawn, so the child's end cannot be reaped before its
    /// waiter is registered.
    pub fn spawn<T>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<(T, i32)>,
    ) -> std::io::Result<(T, oneshot::Receiver<ExitStatus>)> {
        let mut table = self.table.lock().expect("reaper table");
        let (child, pid) = spawn()?;
        let (tx, rx) = oneshot::channel();
        table.insert(pid, tx);
        Ok((child, rx))
    }
}

/// Reaps every ended child. The table stays locked from `waitpid` to the
/// hand-over: once a pid is reaped it may be reused at once, and a spawn that
/// got the reused pid must not receive the old process's status.
fn reap_all(table: &Mutex<Table>) {
    let mut table = table.lock().expect("reaper table");
    loop {
        let mut raw = 0;
        // SAFETY: waitpid writes only to `raw`.
        let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        let status = if libc::WIFSIGNALED(raw) {
            ExitStatus::Signal(libc::WTERMSIG(raw))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(raw))
        };
        match table.remove(&pid) {
            Some(waiter) => {
                let _ = waiter.send(status);
            }
            None => debug!(pid, ?status, "reaped an orphan"),
        }
    }
}
