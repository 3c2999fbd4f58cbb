//! A container's resource use, from the engine: one `stats` sample (CPU,
//! memory, processes, network) and the size of its writable layer.

use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{InspectContainerOptions, StatsOptions};
use futures::StreamExt;

use super::DockerProvider;
use super::errors::engine_error;
use crate::error::{Error, Result};
use crate::provider::contract::{NetworkBytes, Usage};

impl DockerProvider {
    /// What the sandbox's container uses now.
    pub(super) async fn measure(&self, sandbox_id: &str) -> Result<Usage> {
        let name = Self::container_name(sandbox_id)?;
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let stats = self
            .docker
            .stats(&name, Some(options))
            .next()
            .await
            .ok_or_else(|| Error::unavailable("the Docker engine sent no stats"))?
            .map_err(|e| engine_error("reading a sandbox container's stats", e))?;
        let size = self
            .docker
            .inspect_container(&name, Some(InspectContainerOptions { size: true }))
            .await
            .map_err(|e| engine_error("reading a sandbox container's size", e))?
            .size_rw;
        let mut usage = usage_of(&stats);
        usage.disk_bytes = size.and_then(|s| u64::try_from(s).ok());
        Ok(usage)
    }
}

/// The figures of one stats sample.
fn usage_of(stats: &ContainerStatsResponse) -> Usage {
    let cpu_ns = stats
        .cpu_stats
        .as_ref()
        .and_then(|cpu| cpu.cpu_usage.as_ref()?.total_usage)
        .unwrap_or(0);
    let memory = stats.memory_stats.as_ref();
    let usage = memory.and_then(|m| m.usage).unwrap_or(0);
    // As `docker stats` counts: page cache the kernel can take back (the
    // inactive file pages) is not in use.
    let reclaimable = memory
        .and_then(|m| m.stats.as_ref())
        .and_then(|s| {
            s.get("total_inactive_file")
                .or_else(|| s.get("inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    let network = stats.networks.as_ref().map(|networks| {
        networks
            .values()
            .fold(NetworkBytes::default(), |sum, n| NetworkBytes {
                received: sum.received + n.rx_bytes.unwrap_or(0),
                sent: sum.sent + n.tx_bytes.unwrap_or(0),
            })
    });
    Usage {
        cpu_time: std::time::Duration::from_nanos(cpu_ns),
        memory_bytes: usage.saturating_sub(reclaimable),
        // cgroup v1 keeps a peak; v2's stats have none.
        memory_peak_bytes: memory.and_then(|m| m.max_usage).filter(|peak| *peak > 0),
        pids: stats
            .pids_stats
            .as_ref()
            .and_then(|p| p.current)
            .unwrap_or(0),
        disk_bytes: None,
        // A container without a network of its own (NONE) reports none.
        network: network.or(Some(NetworkBytes::default())),
    }
}
