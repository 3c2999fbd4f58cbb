//! The engine network of ALLOW_LIST sandboxes.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use bollard::Docker;
use bollard::query_parameters::InspectNetworkOptions;

use super::state::{BRIDGE, NETWORK, refusal};
use crate::error::Result;
use crate::provider::docker::errors::{engine_error, is_not_found};
use crate::provider::docker::layout;
use crate::provider::docker::networks::IsolatedNetwork;

pub(super) const THE_NETWORK: IsolatedNetwork = IsolatedNetwork {
    name: NETWORK,
    bridge: BRIDGE,
    role: layout::ROLE_ALLOW_LIST_NETWORK,
    mode: "ALLOW_LIST",
};

/// Creates the ALLOW_LIST network unless it exists; its gateway address.
pub(super) async fn ensure_network(docker: &Docker) -> Result<Ipv4Addr> {
    let inspected = match docker
        .inspect_network(NETWORK, None::<InspectNetworkOptions>)
        .await
    {
        Ok(network) => network,
        Err(e) if is_not_found(&e) => {
            THE_NETWORK.create(docker).await?;
            docker
                .inspect_network(NETWORK, None::<InspectNetworkOptions>)
                .await
                .map_err(|e| engine_error("inspecting the ALLOW_LIST network", e))?
        }
        Err(e) => return Err(engine_error("inspecting the ALLOW_LIST network", e)),
    };
    inspected
        .ipam
        .and_then(|ipam| ipam.config)
        .unwrap_or_default()
        .iter()
        .filter_map(|config| config.gateway.as_deref()?.parse().ok())
        .next()
        .ok_or_else(|| {
            refusal(format!(
                "the engine's network {NETWORK} has no IPv4 gateway; remove it and Paddock makes \
                 it anew"
            ))
        })
}

/// The addresses held by containers on [`NETWORK`], whoever made them.
pub(super) async fn network_members(docker: &Docker) -> Result<BTreeSet<Ipv4Addr>> {
    let network = docker
        .inspect_network(NETWORK, None::<InspectNetworkOptions>)
        .await
        .map_err(|e| engine_error("inspecting the ALLOW_LIST network", e))?;
    Ok(network
        .containers
        .unwrap_or_default()
        .values()
        .filter_map(|endpoint| {
            let cidr = endpoint.ipv4_address.as_deref()?;
            cidr.split('/').next()?.parse().ok()
        })
        .collect())
}
