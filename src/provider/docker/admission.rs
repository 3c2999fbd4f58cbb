//! Keeping ALLOW_LIST sandboxes' firewall rules in step with their
//! containers: admitting a container as it starts, and every few seconds
//! the running ones this server has not admitted (after a restart).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};

use super::allow_list::NETWORK;
use super::errors::engine_error;
use super::{DockerProvider, layout};
use crate::error::Result;

impl DockerProvider {
    /// Admits the just started container `name` when it is an ALLOW_LIST
    /// sandbox (see [`super::allow_list::AllowList::admit`]).
    pub(super) async fn admit_to_allow_list(&self, name: &str) -> Result<()> {
        let container = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| engine_error("inspecting a started sandbox container", e))?;
        self.allow_list.admit(&self.docker, &container).await
    }

    /// Keeps the ALLOW_LIST rules (see [`super::allow_list::AllowList::keep`]) for this
    /// server's running ALLOW_LIST sandboxes.
    pub(super) async fn keep_allow_list(&self) {
        let listed = self
            .docker
            .list_containers(Some(ListContainersOptions {
                filters: Some(HashMap::from([
                    (
                        "label".to_owned(),
                        vec![format!("{}={}", layout::LABEL_SCOPE, self.settings.scope)],
                    ),
                    ("network".to_owned(), vec![NETWORK.to_owned()]),
                ])),
                ..Default::default()
            }))
            .await;
        let mut running = Vec::new();
        for summary in listed.unwrap_or_default() {
            let address = summary
                .network_settings
                .as_ref()
                .and_then(|settings| settings.networks.as_ref()?.get(NETWORK)?.ip_address.clone())
                .and_then(|address| address.parse::<Ipv4Addr>().ok());
            if address.is_some_and(|address| self.allow_list.is_admitted(address)) {
                continue;
            }
            let Some(id) = summary.id else { continue };
            if let Ok(container) = self
                .docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                && container.state.as_ref().and_then(|s| s.running) == Some(true)
            {
                running.push(container);
            }
        }
        self.allow_list.keep(&self.docker, &running).await;
    }
}
