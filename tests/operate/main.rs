//! Operating the server: its Prometheus metrics read by a real parser, its
//! traces received by a real OTLP collector service, a graceful shutdown
//! with streams open, and its Postgres stopped and started under load.
//!
//! The metrics are parsed by the official Python client's OpenMetrics
//! parser (`prometheus_client`, from `PADDOCK_TEST_PYTHON`; scripts/test
//! makes the environment in .tools/); without it these tests skip, and
//! fail under CI=true.

#[path = "../common/mod.rs"]
mod common;

mod faults;
mod metrics;
mod shutdown;
mod traces;
mod usage;
