//! Paddock: a gRPC control plane for code-execution sandboxes.
//!
//! Data flows from the gRPC services in [`api`] through the domain in
//! [`sandbox`] to the state [`store`] and the sandbox [`provider`]s. The domain
//! never sees tonic or prost types; providers never see the store.

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
