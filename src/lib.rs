//! Paddock: a gRPC control plane for code-execution sandboxes.
//!
//! Data flows from the gRPC services in [`api`] through the domain in
//! [`sandbox`] to the state [`store`] and the sandbox [`provider`]s, and to
//! the agents inside sandboxes through [`agent_client`]. Dependencies run
//! the same way, down these layers (tests/architecture.rs checks them):
//!
//! ```text
//! server, config          wiring and settings
//! api                     the gRPC surface: convert, call, pack; auth; audit
//! sandbox (the Manager)   the domain: lifecycle, quotas, reaper, reconcile
//! provider, keys          the ways of making sandboxes; API keys
//! store                   durable state
//! sandbox vocabulary,     the domain's data and rules (sandbox/model.rs ...);
//!   agent_client,         the one client of agents;
//!   agent, client         the in-sandbox agent and the CLI, programs of their own
//! pb                      generated code
//! error, ids, clock, ...  leaves
//! ```
//!
//! The domain never sees tonic or prost types (it holds an agent's client as
//! an opaque handle); providers never see the store.

pub mod agent;
pub mod agent_client;
pub mod api;
pub mod client;
pub mod clock;
pub mod config;
pub mod error;
pub mod ids;
pub mod keys;
pub mod pb;
pub mod provider;
pub mod sandbox;
pub mod server;
pub mod signals;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;
pub mod tls;
pub mod wire;

pub use error::{Error, ErrorKind, Result};
