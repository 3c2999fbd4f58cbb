//! A process sandbox's resource use, read from `/proc` for the agent's
//! process tree and from its directory on disk.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::contract::{NetworkBytes, Usage};

/// The most directory entries counted for `disk_bytes`: past it the figure
/// is what was counted so far, so a sandbox of millions of files cannot make
/// a measurement slow.
const MAX_DISK_ENTRIES: usize = 200_000;

/// What the process tree under `root` (the sandbox's agent) and the
/// directory `dir` use now.
pub(super) fn measure(root: i32, dir: &Path) -> Usage {
    let ticks = clock_ticks();
    let mut usage = Usage::default();
    let mut pending = vec![root];
    let mut cpu_ticks = 0u64;
    let mut tree = Vec::new();
    while let Some(pid) = pending.pop() {
        let Some(stat) = Stat::of(pid) else { continue };
        tree.push(pid);
        // A process's own time and its reaped children's: the agent reaps
        // every command, so their time is in its cutime and cstime.
        cpu_ticks += stat.utime + stat.stime + stat.cutime + stat.cstime;
        usage.memory_bytes += stat.rss_pages * page_size();
        usage.pids += stat.threads;
        pending.extend(children(pid));
    }
    usage.cpu_time = Duration::from_secs_f64(cpu_ticks as f64 / ticks as f64);
    usage.disk_bytes = Some(disk_bytes(dir));
    // The agent may run in a network namespace its launcher (bubblewrap)
    // is not in: the first process of the tree in one counts.
    usage.network = tree.into_iter().find_map(own_network);
    usage
}

/// The fields of `/proc/PID/stat` a measurement needs.
struct Stat {
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
    threads: u64,
    rss_pages: u64,
}

impl Stat {
    fn of(pid: i32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: fields start
        // after the last ')'. Field 3 (state) is the first after it.
        let (_, rest) = text.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            cutime: field(16)?,
            cstime: field(17)?,
            threads: field(20)?,
            rss_pages: field(24)?,
        })
    }
}

fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

/// The space the files under `dir` take on disk, symlinks not followed.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut seen = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_DISK_ENTRIES {
                return total;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

/// The network bytes of `pid`'s network namespace when it is not the
/// server's own (a sandbox sharing the host's network has no count of its
/// own), loopback left out.
fn own_network(pid: i32) -> Option<NetworkBytes> {
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/net")).ok()?;
    let ours = std::fs::metadata("/proc/self/ns/net").ok()?;
    if theirs.ino() == ours.ino() {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    // A namespace of its own with only loopback has sent nothing.
    Some(NetworkBytes::from_net_dev(&text).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), vec![1u8; 64 << 10]).unwrap();
        let usage = measure(std::process::id() as i32, dir.path());
        assert!(usage.memory_bytes > 1 << 20, "{usage:?}");
        assert!(usage.pids >= 1, "{usage:?}");
        assert!(usage.disk_bytes.unwrap() >= 64 << 10, "{usage:?}");
        assert_eq!(
            usage.network, None,
            "the server's own network is not counted"
        );
    }
}
