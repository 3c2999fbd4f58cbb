//! Durable state: sandbox records and their lifecycle events.
//!
//! [`Store`] is the contract; [`SqlStore`] implements it on SQLite (the
//! embedded default) and on Postgres (shared by several replicas), with
//! migrations embedded in the binary.

mod contract;
mod sql;

pub use contract::{ApiKey, EventQuery, SandboxQuery, Store};
pub use sql::SqlStore;
