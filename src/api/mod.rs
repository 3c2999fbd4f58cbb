//! The gRPC surface: thin service implementations that convert, call the
//! domain, and convert back.
//!
//! A handler unpacks its request, checks and converts it in [`convert`],
//! calls the domain (or the sandbox's agent through the domain), and packs
//! the answer; domain errors become statuses in one place
//! (status.rs), and calls that change something are recorded by
//! `audit::audited` (reads by `audit::unaudited`, the same without the
//! trail). The tower layer in [`auth`] runs before every
//! handler.
//!
//! Below it: the domain ([`crate::sandbox`]) and the agent client
//! ([`crate::agent_client`]); nothing below imports this module.

pub mod audit;
pub mod auth;
pub mod convert;
mod exec;
mod file;
mod port;
pub mod preview;
mod revocation;
mod sandbox;
mod status;
mod template;
mod volume;

pub use exec::ExecApi;
pub use file::FileApi;
pub use port::PortApi;
pub use sandbox::SandboxApi;
pub use status::code_name;
pub use template::TemplateApi;
pub use volume::VolumeApi;
