//! The ports a sandbox's owner made public for the preview proxy. (Its
//! agent, which forwards connections, is the one `Manager::agent` hands out:
//! every provider whose sandboxes run the agent forwards ports.)

use super::manager::state_error;
use super::{EventType, Manager, Sandbox};
use crate::clock;
use crate::error::{Error, Result};

/// The most ports one sandbox may have public at once.
pub const MAX_PUBLIC_PORTS: usize = 32;

impl Manager {
    /// Makes `port` of the tenant's sandbox `id` public; nothing changes
    /// when it is already.
    pub async fn expose_port(&self, tenant: &str, id: &str, port: u16) -> Result<Sandbox> {
        self.change_public_ports(tenant, id, |ports| {
            if ports.contains(&port) {
                return Ok(false);
            }
            if ports.len() >= MAX_PUBLIC_PORTS {
                return Err(Error::failed_precondition(format!(
                    "sandbox {id} has {MAX_PUBLIC_PORTS} public ports, the most it may have; \
                     unexpose one first"
                )));
            }
            ports.push(port);
            ports.sort_unstable();
            Ok(true)
        })
        .await
    }

    /// Makes `port` of the tenant's sandbox `id` private again; nothing
    /// changes when it is not public.
    pub async fn unexpose_port(&self, tenant: &str, id: &str, port: u16) -> Result<Sandbox> {
        self.change_public_ports(tenant, id, |ports| {
            let before = ports.len();
            ports.retain(|p| *p != port);
            Ok(ports.len() != before)
        })
        .await
    }

    /// The sandbox `id`, whoever owns it: for the preview proxy, which
    /// admits anyone to a public port.
    pub async fn sandbox_of_any_tenant(&self, id: &str) -> Result<Option<Sandbox>> {
        self.store().get_sandbox_of_any_tenant(id).await
    }

    /// Applies `change` to the sandbox's public ports; `change` says
    /// whether it changed them, and an UPDATED event is written only then.
    async fn change_public_ports(
        &self,
        tenant: &str,
        id: &str,
        change: impl Fn(&mut Vec<u16>) -> Result<bool>,
    ) -> Result<Sandbox> {
        let current = self.get(tenant, id).await?;
        current
            .state
            .plan_update()
            .map_err(|rule| state_error(&current, rule))?;
        if !change(&mut current.public_ports.clone())? {
            return Ok(current);
        }
        self.modify(tenant, id, |current| {
            current
                .state
                .plan_update()
                .map_err(|rule| state_error(current, rule))?;
            let mut next = current.clone();
            change(&mut next.public_ports)?;
            next.updated_at = clock::now();
            Ok((next, EventType::Updated))
        })
        .await
    }
}
