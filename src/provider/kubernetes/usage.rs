//! A pod sandbox's resource use, read by its agent from the sandbox
//! container's own cgroup (v2, else v1) and network namespace: the API
//! server offers no usage of its own without a metrics server.
//!
//! The figures come from inside the sandbox, through its agent, so code in
//! the sandbox could falsify them (as it could kill its agent): they are
//! for the sandbox's owner to read, never a basis for limits or billing.

use std::time::Duration;

use crate::agent_client::AgentClient;
use crate::error::{Error, Result};
use crate::pb;
use crate::provider::contract::{NetworkBytes, Usage};

/// Reads `path` in the sandbox; `None` when it cannot be read.
async fn read(agent: &AgentClient, sandbox_id: &str, path: &str) -> Option<String> {
    let answer = agent
        .read_file(pb::ReadFileRequest {
            sandbox_id: sandbox_id.to_owned(),
            path: path.to_owned(),
            max_bytes: 64 << 10,
            ..Default::default()
        })
        .await
        .ok()?;
    String::from_utf8(answer.content).ok()
}

/// The number after `key` in a `key value` file.
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

fn number(text: Option<String>) -> Option<u64> {
    text?.trim().parse().ok()
}

/// What the sandbox behind `agent` uses now.
pub(super) async fn measure(agent: &AgentClient, sandbox_id: &str) -> Result<Usage> {
    let at = |path: &'static str| read(agent, sandbox_id, path);
    let mut usage = Usage::default();
    if let Some(cpu) = at("/sys/fs/cgroup/cpu.stat").await {
        // cgroup v2: one directory.
        usage.cpu_time = Duration::from_micros(field(&cpu, "usage_usec").unwrap_or(0));
        let current = number(at("/sys/fs/cgroup/memory.current").await).unwrap_or(0);
        let stat = at("/sys/fs/cgroup/memory.stat").await.unwrap_or_default();
        usage.memory_bytes = current.saturating_sub(field(&stat, "inactive_file").unwrap_or(0));
        usage.memory_peak_bytes = number(at("/sys/fs/cgroup/memory.peak").await);
        usage.pids = number(at("/sys/fs/cgroup/pids.current").await).unwrap_or(0);
    } else if let Some(nanos) = number(at("/sys/fs/cgroup/cpuacct/cpuacct.usage").await) {
        // cgroup v1: a directory per controller.
        usage.cpu_time = Duration::from_nanos(nanos);
        let current = number(at("/sys/fs/cgroup/memory/memory.usage_in_bytes").await).unwrap_or(0);
        let stat = at("/sys/fs/cgroup/memory/memory.stat")
            .await
            .unwrap_or_default();
        usage.memory_bytes =
            current.saturating_sub(field(&stat, "total_inactive_file").unwrap_or(0));
        usage.memory_peak_bytes =
            number(at("/sys/fs/cgroup/memory/memory.max_usage_in_bytes").await);
        usage.pids = number(at("/sys/fs/cgroup/pids/pids.current").await).unwrap_or(0);
    } else {
        return Err(Error::failed_precondition(format!(
            "sandbox {sandbox_id}'s cgroup cannot be read from inside its pod, so its usage is \
             not known"
        )));
    }
    usage.network = at("/proc/net/dev")
        .await
        .and_then(|text| NetworkBytes::from_net_dev(&text));
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_as_the_kernel_writes_them() {
        assert_eq!(
            field("usage_usec 1500\nuser_usec 10\n", "usage_usec"),
            Some(1500)
        );
        assert_eq!(field("usage_usec 1500\n", "user_usec"), None);
        let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 2000 5 0 0 0 0 0 0 3000 6 0 0 0 0 0 0\n";
        assert_eq!(
            NetworkBytes::from_net_dev(dev),
            Some(NetworkBytes {
                received: 2000,
                sent: 3000
            })
        );
        assert_eq!(
            NetworkBytes::from_net_dev(&dev.lines().take(3).collect::<Vec<_>>().join("\n")),
            None
        );
    }
}
