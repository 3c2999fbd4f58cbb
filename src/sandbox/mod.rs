//! The sandbox domain: what a sandbox is, which lifecycle steps its state
//! allows, and the [`Manager`] that drives the store and the providers.

mod agents;
mod manager;
mod model;
pub mod quota;
mod reaper;
mod reconcile;
pub mod rules;
pub mod selector;
mod state;
mod watch;

pub use manager::{
    CreateSandbox, IfExists, LifecycleConfig, ListQuery, Manager, SandboxPage, SandboxUpdate,
    TimeoutUpdate,
};
pub use model::{
    DEFAULT_TENANT, EventType, Labels, Metadata, NetworkMode, Resources, Sandbox, SandboxEvent,
    SandboxSpec, Volume,
};
pub use reaper::{BusyCheck, spawn_reaper};
pub use reconcile::ReconcileReport;
pub use selector::LabelSelector;
pub use state::SandboxState;
