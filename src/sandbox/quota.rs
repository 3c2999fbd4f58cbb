//! Per-tenant quotas: how many sandboxes a tenant may have running, how many
//! of its commands may run through a server at once, the largest CPU and
//! memory one of its sandboxes may ask for, and what its ALLOW_LIST
//! sandboxes may allow. A default applies to every tenant; overrides
//! replace it field by field for named tenants.
//!
//! The admission of commands in flight lives here too (`CommandSlots`),
//! beside the count of running sandboxes that the manager keeps.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

use super::Resources;
use super::network::AllowedHost;

/// One tenant's limits; `None`: unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quota {
    /// Sandboxes not STOPPED, FAILED or DELETED at once.
    pub running_sandboxes: Option<u64>,
    /// Exec streams and RunCommand calls in flight on one server.
    pub commands: Option<u64>,
    /// The largest `resources.cpu_millis` one sandbox may ask for.
    pub max_cpu_millis: Option<u64>,
    /// The largest `resources.memory_bytes` one sandbox may ask for.
    pub max_memory_bytes: Option<u64>,
    /// What an ALLOW_LIST sandbox may allow: each entry of its
    /// `allowed_hosts` must fall within one of these. `None`: anything the
    /// server does not block.
    pub allowed_hosts: Option<Vec<AllowedHost>>,
}

impl Quota {
    /// `self`, with the fields `over` sets replaced by them.
    fn overridden_by(&self, over: &Quota) -> Quota {
        Quota {
            running_sandboxes: over.running_sandboxes.or(self.running_sandboxes),
            commands: over.commands.or(self.commands),
            max_cpu_millis: over.max_cpu_millis.or(self.max_cpu_millis),
            max_memory_bytes: over.max_memory_bytes.or(self.max_memory_bytes),
            allowed_hosts: over
                .allowed_hosts
                .clone()
                .or_else(|| self.allowed_hosts.clone()),
        }
    }
}

/// The quotas of every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quotas {
    /// What every tenant gets.
    pub default: Quota,
    /// Tenants with limits of their own, field by field over the default.
    pub tenants: BTreeMap<String, Quota>,
}

impl Quotas {
    /// The quota of `tenant`.
    pub fn of(&self, tenant: &str) -> Quota {
        match self.tenants.get(tenant) {
            Some(over) => self.default.overridden_by(over),
            None => self.default.clone(),
        }
    }

    /// Refuses resources over the tenant's per-sandbox limits.
    /// `asked` with each limit it leaves unset taken from `defaults`, but
    /// never above the tenant's quota: a default the operator set higher
    /// than a tenant's maximum becomes that maximum.
    pub fn with_defaults(&self, tenant: &str, asked: Resources, defaults: Resources) -> Resources {
        let quota = self.of(tenant);
        let capped = |default: Option<u64>, max: Option<u64>| match (default, max) {
            (Some(default), Some(max)) => Some(default.min(max)),
            (default, _) => default,
        };
        Resources {
            cpu_millis: asked
                .cpu_millis
                .or(capped(defaults.cpu_millis, quota.max_cpu_millis)),
            memory_bytes: asked
                .memory_bytes
                .or(capped(defaults.memory_bytes, quota.max_memory_bytes)),
            pids: asked.pids.or(defaults.pids),
        }
    }

    pub fn check_resources(&self, tenant: &str, resources: &Resources) -> Result<()> {
        let quota = self.of(tenant);
        if let (Some(asked), Some(max)) = (resources.cpu_millis, quota.max_cpu_millis)
            && asked > max
        {
            return Err(Error::resource_exhausted(format!(
                "resources.cpu_millis: {asked} is over tenant {tenant}'s quota max_cpu_millis \
                 ({max})"
            )));
        }
        if let (Some(asked), Some(max)) = (resources.memory_bytes, quota.max_memory_bytes)
            && asked > max
        {
            return Err(Error::resource_exhausted(format!(
                "resources.memory_bytes: {asked} is over tenant {tenant}'s quota \
                 max_memory_bytes ({max})"
            )));
        }
        Ok(())
    }

    /// Refuses `allowed_hosts` (canonical entries) that reach past the
    /// tenant's `allowed_hosts` quota: PERMISSION_DENIED naming the first.
    pub fn check_allowed_hosts(&self, tenant: &str, allowed_hosts: &[String]) -> Result<()> {
        let Some(policy) = self.of(tenant).allowed_hosts else {
            return Ok(());
        };
        for entry in allowed_hosts {
            let host: AllowedHost = entry
                .parse()
                .map_err(|why: String| Error::invalid_argument("allowed_hosts", why))?;
            if !policy.iter().any(|within| within.covers(&host)) {
                let policy: Vec<String> = policy.iter().map(ToString::to_string).collect();
                return Err(Error::permission_denied(format!(
                    "allowed_hosts: {host} is outside what tenant {tenant} may allow (its quota \
                     allowed_hosts: {})",
                    if policy.is_empty() {
                        "nothing".to_owned()
                    } else {
                        policy.join(", ")
                    }
                )));
            }
        }
        Ok(())
    }
}

/// The places of commands in flight through this server: every tenant's
/// together under the server's limit, and each tenant's under its
/// `commands` quota.
pub(super) struct CommandSlots {
    server: Arc<Semaphore>,
    limit: usize,
    /// Each tenant's places, for tenants with a `commands` quota.
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// The places one command holds while it is in flight; dropping it frees
/// them.
pub struct CommandAdmission {
    _server: OwnedSemaphorePermit,
    _tenant: Option<OwnedSemaphorePermit>,
}

impl CommandSlots {
    /// Room for `limit` commands at once.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            server: Arc::new(Semaphore::new(limit)),
            limit,
            tenants: Mutex::default(),
        }
    }

    /// Commands holding a place now.
    pub(super) fn in_flight(&self) -> usize {
        self.limit - self.server.available_permits()
    }

    /// A place for one more command of `tenant`, whose quota allows `quota`
    /// at once (`None`: no quota), or RESOURCE_EXHAUSTED naming the limit.
    pub(super) fn admit(&self, tenant: &str, quota: Option<u64>) -> Result<CommandAdmission> {
        let server = self.server.clone().try_acquire_owned().map_err(|_| {
            Error::resource_exhausted(format!(
                "this server runs {} commands at once, its limit; retry when one ends",
                self.limit
            ))
        })?;
        let Some(quota) = quota else {
            return Ok(CommandAdmission {
                _server: server,
                _tenant: None,
            });
        };
        let places = self
            .tenants
            .lock()
            .expect("tenants in flight")
            .entry(tenant.to_owned())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(
                    usize::try_from(quota).unwrap_or(Semaphore::MAX_PERMITS),
                ))
            })
            .clone();
        let tenant_place = places.try_acquire_owned().map_err(|_| {
            Error::resource_exhausted(format!(
                "tenant {tenant} runs {quota} commands through this server, its quota \
                 commands; retry when one ends"
            ))
        })?;
        Ok(CommandAdmission {
            _server: server,
            _tenant: Some(tenant_place),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_stay_within_the_tenants_policy() {
        let quotas = Quotas {
            default: Quota::default(),
            tenants: [
                (
                    "ci".to_owned(),
                    Quota {
                        allowed_hosts: Some(vec![
                            "*.pythonhosted.org".parse().unwrap(),
                            "198.51.100.0/24".parse().unwrap(),
                        ]),
                        ..Quota::default()
                    },
                ),
                (
                    "offline".to_owned(),
                    Quota {
                        allowed_hosts: Some(Vec::new()),
                        ..Quota::default()
                    },
                ),
            ]
            .into(),
        };
        let hosts = |list: &[&str]| list.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
        let anything = hosts(&["example.com", "8.8.8.0/24"]);
        quotas.check_allowed_hosts("other", &anything).unwrap();
        quotas
            .check_allowed_hosts("ci", &hosts(&["files.pythonhosted.org", "198.51.100.7/32"]))
            .unwrap();
        let error = quotas
            .check_allowed_hosts("ci", &hosts(&["files.pythonhosted.org", "pypi.org"]))
            .unwrap_err();
        assert_eq!(error.kind(), crate::error::ErrorKind::PermissionDenied);
        assert!(
            error
                .message()
                .contains("pypi.org is outside what tenant ci may allow")
                && error
                    .message()
                    .contains("*.pythonhosted.org, 198.51.100.0/24"),
            "{error}"
        );
        let error = quotas
            .check_allowed_hosts("offline", &hosts(&["example.com"]))
            .unwrap_err();
        assert!(
            error.message().contains("allowed_hosts: nothing"),
            "{error}"
        );
        quotas.check_allowed_hosts("offline", &[]).unwrap();
    }

    #[test]
    fn overrides_replace_the_default_field_by_field() {
        let quotas = Quotas {
            default: Quota {
                running_sandboxes: Some(2),
                commands: Some(10),
                ..Quota::default()
            },
            tenants: [(
                "big".to_owned(),
                Quota {
                    running_sandboxes: Some(50),
                    max_memory_bytes: Some(1 << 30),
                    ..Quota::default()
                },
            )]
            .into(),
        };
        assert_eq!(quotas.of("small").running_sandboxes, Some(2));
        let big = quotas.of("big");
        assert_eq!(big.running_sandboxes, Some(50));
        assert_eq!(big.commands, Some(10), "kept from the default");
        let too_much = Resources {
            memory_bytes: Some(2 << 30),
            ..Resources::default()
        };
        let error = quotas.check_resources("big", &too_much).unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::ResourceExhausted);
        assert!(
            error.message().contains("max_memory_bytes"),
            "{}",
            error.message()
        );
        quotas.check_resources("small", &too_much).unwrap();
    }
}
