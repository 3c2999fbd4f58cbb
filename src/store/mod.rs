//! Durable state: sandbox records and their lifecycle events, API keys,
//! named volumes, templates.
//!
//! [`Store`] is the contract; [`SqlStore`] implements it on SQLite (the
//! embedded default) and on Postgres (shared by several replicas), with
//! migrations embedded in the binary. [`ObservedStore`] wraps either, tracing
//! and counting what it does.

mod contract;
mod observed;
mod sql;

pub use contract::{
    ApiKey, EventQuery, SandboxQuery, Store, TemplateRemoval, VolumeRecord, VolumeRemoval,
};
pub use observed::{DatabaseHealth, ObservedStore};
pub use sql::SqlStore;
