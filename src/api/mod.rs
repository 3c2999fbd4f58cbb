//! The gRPC surface: thin service implementations that convert, call the
//! domain, and convert back.

pub mod convert;
mod sandbox;
mod status;

pub use sandbox::SandboxApi;
