//! The server's metrics as a scrape sees them: the gRPC methods metrics
//! may name, and the exposition with the gauges read at scrape time.

use std::sync::Arc;

use anyhow::Context;
use tracing::warn;

use crate::pb;
use crate::sandbox::Manager;
use crate::telemetry::{self, CensusEntry, KnownMethods};

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

/// The exposition for each scrape: the counters, with the store's census
/// and the commands in flight read at that moment. A store that cannot be
/// read leaves the census out (its error is counted) rather than failing
/// the scrape.
pub(super) fn render_metrics(manager: Manager) -> telemetry::exposition::Render {
    Arc::new(move || {
        let manager = manager.clone();
        Box::pin(async move {
            let census = match manager.census().await {
                Ok(census) => census
                    .into_iter()
                    .map(|(provider, state, count)| CensusEntry {
                        provider,
                        state: state.as_str().to_owned(),
                        count,
                    })
                    .collect(),
                Err(error) => {
                    warn!(%error, "metrics: cannot count sandboxes in the store");
                    Vec::new()
                }
            };
            manager
                .metrics()
                .encode(&census, manager.commands_in_flight() as u64)
        })
    })
}
