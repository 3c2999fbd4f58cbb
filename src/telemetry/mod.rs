//! What the server tells its operators: logs through `tracing`, traces
//! exported over OTLP ([`traces`]), and Prometheus metrics (counted in
//! [`Metrics`] by the layers above, served by [`exposition`]), with every
//! gRPC call observed, in a span and in the metrics, by [`ObserveLayer`]. A
//! leaf: it names the targets it treats specially, and the layers that
//! write to them use its names.

mod codes;
pub mod exposition;
mod logs;
mod metrics;
mod rpc;
mod sandbox_figures;
pub mod traces;
mod warm_pools;

pub use codes::code_name;
pub use logs::{AUDIT_TARGET, LogFormat, Telemetry, init, init_with_traces};
pub use metrics::{CensusEntry, CommandKind, Direction, Metrics, ReapCause, ScrapeFigures};
pub use rpc::{KnownMethods, ObserveLayer};
pub use sandbox_figures::SandboxFigures;
pub use warm_pools::WarmPoolFamilies;
