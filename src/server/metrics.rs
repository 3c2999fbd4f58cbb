//! The server's metrics as a scrape sees them: the gRPC methods metrics
//! may name, and the exposition with what is read at scrape time (the
//! store's census, commands in flight, and on the server holding the
//! reaper's lease the running sandboxes' use).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use tracing::warn;

use crate::pb;
use crate::sandbox::{Lease, Manager, SandboxState};
use crate::telemetry::{self, CensusEntry, KnownMethods, SandboxFigures, ScrapeFigures};

/// The most running sandboxes measured for one scrape, which bounds the
/// per-sandbox series at this many sandboxes (the newest); the others are
/// counted in `paddock_sandbox_figures_left_out`.
pub const MEASURED_PER_SCRAPE: usize = 100;

/// The longest the measurements of one scrape may take altogether, well
/// inside Prometheus's default scrape timeout (10 s); sandboxes not
/// measured by then are left out of that scrape.
const SCRAPE_BUDGET: Duration = Duration::from_secs(4);

/// How many sandboxes are measured at once during a scrape.
const MEASURED_AT_ONCE: usize = 8;

/// The longest one sandbox's measurement may take during a scrape.
const MEASURE_DEADLINE: Duration = Duration::from_secs(2);
/// Every method the server serves, as a full path, read from the
/// descriptors it serves by reflection: the paths metrics name.
pub(super) fn known_methods() -> anyhow::Result<KnownMethods> {
    let mut methods = std::collections::HashSet::new();
    for set in [
        pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let pool = prost_reflect::DescriptorPool::decode(set)
            .context("cannot read the served services' descriptors")?;
        for service in pool.services() {
            for method in service.methods() {
                methods.insert(format!("/{}/{}", service.full_name(), method.name()));
            }
        }
    }
    Ok(Arc::new(methods))
}

/// The exposition for each scrape. A store that cannot be read leaves the
/// census out (its error is counted) rather than failing the scrape.
pub(super) fn render_metrics(manager: Manager, lease: Lease) -> telemetry::exposition::Render {
    Arc::new(move || {
        let manager = manager.clone();
        let lease = lease.clone();
        Box::pin(async move {
            let mut figures = ScrapeFigures {
                commands_running: manager.commands_in_flight() as u64,
                ..ScrapeFigures::default()
            };
            match manager.census().await {
                Ok(census) => {
                    figures.census = census
                        .into_iter()
                        .map(|(provider, state, count)| CensusEntry {
                            provider,
                            state: state.as_str().to_owned(),
                            count,
                        })
                        .collect();
                }
                Err(error) => warn!(%error, "metrics: cannot count sandboxes in the store"),
            }
            // One server measures, so that replicas do not export the same
            // series twice: the one running the reaper.
            if lease.held() {
                let running: u64 = figures
                    .census
                    .iter()
                    .filter(|entry| entry.state == SandboxState::Running.as_str())
                    .map(|entry| entry.count)
                    .sum();
                figures.sandboxes = measure_running(&manager).await;
                figures.sandboxes_left_out = running.saturating_sub(figures.sandboxes.len() as u64);
            }
            manager.metrics().encode(&figures)
        })
    })
}

/// The newest running sandboxes' use, up to [`MEASURED_PER_SCRAPE`]; one
/// that cannot be measured in time is left out.
async fn measure_running(manager: &Manager) -> Vec<SandboxFigures> {
    let running = match manager.running(MEASURED_PER_SCRAPE).await {
        Ok(running) => running,
        Err(error) => {
            warn!(%error, "metrics: cannot list the running sandboxes");
            return Vec::new();
        }
    };
    futures::stream::iter(running)
        .map(|sandbox| async move {
            let measured = tokio::time::timeout(MEASURE_DEADLINE, manager.measure_once(&sandbox));
            let usage = measured.await.ok()?.ok()?;
            Some(SandboxFigures {
                sandbox_id: sandbox.id,
                provider: sandbox.provider,
                cpu_seconds: usage.cpu_time.as_secs_f64(),
                memory_bytes: usage.memory_bytes,
                pids: usage.pids,
                disk_bytes: usage.disk_bytes,
                network: usage.network.map(|n| (n.received, n.sent)),
            })
        })
        .buffer_unordered(MEASURED_AT_ONCE)
        .take_until(tokio::time::sleep(SCRAPE_BUDGET))
        .filter_map(std::future::ready)
        .collect()
        .await
}
