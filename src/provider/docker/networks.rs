//! The engine networks Paddock makes for its network modes: one Linux bridge
//! each, named so that firewall rules can name it, with traffic between the
//! containers on it off.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::NetworkCreateRequest;
use tracing::info;

use super::errors::{engine_error, status_code};
use super::layout;

use crate::error::Result;

/// One network Paddock makes.
pub(super) struct IsolatedNetwork {
    /// The engine network's name.
    pub(super) name: &'static str,
    /// Its Linux bridge on the engine's host.
    pub(super) bridge: &'static str,
    /// Its `io.paddock.role` label.
    pub(super) role: &'static str,
    /// The network mode it serves, for messages.
    pub(super) mode: &'static str,
}

impl IsolatedNetwork {
    /// Whether the network's bridge is in this server's network namespace,
    /// where its firewall rules can hold (not so for a remote engine, or a
    /// server in a container of its own).
    pub(super) fn bridge_is_here(&self) -> bool {
        std::path::Path::new("/sys/class/net")
            .join(self.bridge)
            .exists()
    }

    /// Creates the network; nothing when another server made it meanwhile.
    pub(super) async fn create(&self, docker: &Docker) -> Result<()> {
        let request = NetworkCreateRequest {
            name: self.name.to_owned(),
            driver: Some("bridge".to_owned()),
            options: Some(HashMap::from([
                (
                    "com.docker.network.bridge.name".to_owned(),
                    self.bridge.to_owned(),
                ),
                (
                    "com.docker.network.bridge.enable_icc".to_owned(),
                    "false".to_owned(),
                ),
            ])),
            labels: Some(HashMap::from([(
                layout::LABEL_ROLE.to_owned(),
                self.role.to_owned(),
            )])),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => {
                info!(
                    network = self.name,
                    bridge = self.bridge,
                    mode = self.mode,
                    "created a network"
                );
                Ok(())
            }
            Err(e) if status_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(engine_error(
                &format!("creating the {} network", self.mode),
                e,
            )),
        }
    }
}
