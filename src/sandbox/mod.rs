//! The sandbox domain: what a sandbox is, which lifecycle steps its state
//! allows, and the [`Manager`] that drives the store and the providers.
//!
//! Its vocabulary (model.rs, state.rs, rules.rs, selector.rs, quota.rs,
//! requests.rs, template.rs) depends on nothing else here, so the store and the
//! providers can use it. The Manager (manager.rs, with its actions by theme
//! in create.rs, lifecycle.rs, listing.rs, agents.rs, reconcile.rs,
//! reaper.rs, ports.rs, volumes.rs, templates.rs, warm.rs and watch.rs) sits above the store, the providers and the
//! agent client. This file only names the parts.

mod agent_cache;
mod agents;
mod cpu_samples;
mod create;
mod lease;
mod lifecycle;
mod listing;
mod manager;
mod model;
pub mod network;
mod ports;
pub mod quota;
mod reaper;
mod reconcile;
mod requests;
pub mod rules;
pub mod selector;
mod state;
pub mod template;
mod templates;
mod usage;
mod volumes;
mod warm;
mod warm_counters;
mod watch;

pub use lease::{Lease, LeaseKeeper, REAPER_LEASE, keep_lease};
pub use manager::{LifecycleConfig, Manager};
pub use model::{
    DEFAULT_TENANT, EventType, Labels, Metadata, NetworkMode, Resources, Sandbox, SandboxEvent,
    SandboxSpec, TemplateRef, Volume,
};
pub use ports::MAX_PUBLIC_PORTS;
pub use quota::CommandAdmission;
pub use reaper::spawn_reaper;
pub use reconcile::ReconcileReport;
pub use requests::{CreateSandbox, IfExists, ListQuery, SandboxPage, SandboxUpdate, TimeoutUpdate};
pub use selector::LabelSelector;
pub use state::SandboxState;
pub use template::{DEFAULT_WORKDIR, TemplateRecord, TemplateSpec};
pub use templates::TemplateBuild;
pub use usage::SandboxUsage;
pub use volumes::MAX_VOLUMES_PER_TENANT;
pub use warm::{pool_tenant, spawn_warm_pools};
pub use warm_counters::WarmPoolStatus;
