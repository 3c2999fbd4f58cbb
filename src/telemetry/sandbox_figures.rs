//! The per-sandbox figures of the metrics: what each running sandbox uses,
//! measured at scrape time, one series per sandbox. Their number is bounded
//! by the server (how many sandboxes it measures per scrape); the sandboxes
//! left out are counted.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SandboxLabels {
    sandbox_id: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SandboxDirectionLabels {
    sandbox_id: String,
    provider: String,
    direction: &'static str,
}

/// What one running sandbox uses, for the per-sandbox figures.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxFigures {
    /// The sandbox.
    pub sandbox_id: String,
    /// Its provider.
    pub provider: String,
    /// CPU time used since it started, in seconds.
    pub cpu_seconds: f64,
    /// Memory in use now.
    pub memory_bytes: u64,
    /// Processes and threads now.
    pub pids: u64,
    /// Bytes its filesystem holds beyond its image, when measured.
    pub disk_bytes: Option<u64>,
    /// Network bytes (received, sent), when it has a network of its own.
    pub network: Option<(u64, u64)>,
}

/// The families of the per-sandbox figures.
pub(super) struct SandboxFamilies {
    cpu: Family<SandboxLabels, Counter<f64, AtomicU64>>,
    memory: Family<SandboxLabels, Gauge>,
    pids: Family<SandboxLabels, Gauge>,
    disk: Family<SandboxLabels, Gauge>,
    network: Family<SandboxDirectionLabels, Counter>,
    left_out: Gauge,
}

impl SandboxFamilies {
    /// The families, registered in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let sandbox_cpu = Family::<SandboxLabels, Counter<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "sandbox_cpu",
            "CPU time a running sandbox used since it started (measured at scrape time on \
             the server holding the reaper's lease)",
            Unit::Seconds,
            sandbox_cpu.clone(),
        );
        let sandbox_memory = Family::<SandboxLabels, Gauge>::default();
        registry.register_with_unit(
            "sandbox_memory",
            "Memory a running sandbox uses now, reclaimable page cache left out",
            Unit::Bytes,
            sandbox_memory.clone(),
        );
        let sandbox_pids = Family::<SandboxLabels, Gauge>::default();
        registry.register(
            "sandbox_pids",
            "Processes and threads in a running sandbox now",
            sandbox_pids.clone(),
        );
        let sandbox_disk = Family::<SandboxLabels, Gauge>::default();
        registry.register_with_unit(
            "sandbox_disk",
            "Bytes a running sandbox's filesystem holds beyond its image",
            Unit::Bytes,
            sandbox_disk.clone(),
        );
        let sandbox_network = Family::<SandboxDirectionLabels, Counter>::default();
        registry.register_with_unit(
            "sandbox_network",
            "Network bytes a running sandbox received and sent since it started",
            Unit::Bytes,
            sandbox_network.clone(),
        );
        let sandboxes_left_out = Gauge::default();
        registry.register(
            "sandbox_figures_left_out",
            "Running sandboxes without per-sandbox figures in this scrape (past the bound of \
             sandboxes measured per scrape, or not measurable now)",
            sandboxes_left_out.clone(),
        );
        Self {
            cpu: sandbox_cpu,
            memory: sandbox_memory,
            pids: sandbox_pids,
            disk: sandbox_disk,
            network: sandbox_network,
            left_out: sandboxes_left_out,
        }
    }

    /// Replaces every series with those of `sandboxes`, and counts
    /// `left_out` sandboxes without figures.
    pub(super) fn set(&self, sandboxes: &[SandboxFigures], left_out: u64) {
        self.cpu.clear();
        self.memory.clear();
        self.pids.clear();
        self.disk.clear();
        self.network.clear();
        for figures in sandboxes {
            let labels = SandboxLabels {
                sandbox_id: figures.sandbox_id.clone(),
                provider: figures.provider.clone(),
            };
            // A counter made afresh for each scrape: its value is the total.
            self.cpu.get_or_create(&labels).inc_by(figures.cpu_seconds);
            self.memory
                .get_or_create(&labels)
                .set(signed(figures.memory_bytes));
            self.pids.get_or_create(&labels).set(signed(figures.pids));
            if let Some(disk) = figures.disk_bytes {
                self.disk.get_or_create(&labels).set(signed(disk));
            }
            if let Some((received, sent)) = figures.network {
                for (direction, bytes) in [("received", received), ("sent", sent)] {
                    self.network
                        .get_or_create(&SandboxDirectionLabels {
                            sandbox_id: figures.sandbox_id.clone(),
                            provider: figures.provider.clone(),
                            direction,
                        })
                        .inc_by(bytes);
                }
            }
        }
        self.left_out.set(signed(left_out));
    }
}

/// `value` as a gauge's signed value, saturating.
pub(super) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
