//! The gRPC surface: thin service implementations that convert, call the
//! domain, and convert back.

pub mod audit;
pub mod auth;
pub mod convert;
mod exec;
mod file;
mod sandbox;
mod status;

pub use exec::ExecApi;
pub use file::FileApi;
pub use sandbox::SandboxApi;
pub use status::code_name;
