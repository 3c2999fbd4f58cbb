//! A sandbox's measured use, as the API answers it.

use super::fields::{as_i64, duration_to_pb, timestamp};
use crate::pb;
use crate::sandbox::SandboxUsage;

/// `usage` as a `SandboxMetrics` message.
pub fn usage_to_pb(measured: &SandboxUsage) -> pb::SandboxMetrics {
    let SandboxUsage {
        sandbox_id,
        provider: _,
        time,
        usage,
        cpu_share,
        cpu_window,
        limits,
    } = measured;
    let signed = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    pb::SandboxMetrics {
        sandbox_id: sandbox_id.clone(),
        time: Some(timestamp(*time)),
        cpu_time: Some(duration_to_pb(usage.cpu_time)),
        cpu_share: *cpu_share,
        cpu_window: Some(duration_to_pb(*cpu_window)),
        memory_bytes: signed(usage.memory_bytes),
        memory_peak_bytes: usage.memory_peak_bytes.map(signed),
        limits: limits.is_limited().then(|| pb::Resources {
            cpu_millis: as_i64(limits.cpu_millis),
            memory_bytes: as_i64(limits.memory_bytes),
            pids: as_i64(limits.pids),
        }),
        pids: signed(usage.pids),
        disk_bytes: usage.disk_bytes.map(signed),
        network_received_bytes: usage.network.map(|n| signed(n.received)),
        network_sent_bytes: usage.network.map(|n| signed(n.sent)),
    }
}
