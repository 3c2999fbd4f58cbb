//! The gRPC surface: thin service implementations that convert, call the
//! domain, and convert back.
//!
//! A handler unpacks its request, checks and converts it in [`convert`],
//! calls the domain (or the sandbox's agent through the domain), and packs
//! the answer; domain errors become statuses in one place
//! ([`status`]), and calls that change something are recorded by
//! [`audit::audited`]. The tower layer in [`auth`] runs before every
//! handler.
//!
//! Below it: the domain ([`crate::sandbox`]) and the agent client
//! ([`crate::agent_client`]); nothing below imports this module.

pub mod audit;
pub mod auth;
pub mod convert;
mod exec;
mod file;
mod sandbox;
mod status;

use std::future::Future;

use tonic::{Request, Response, Status};

pub use exec::ExecApi;
pub use file::FileApi;
pub use sandbox::SandboxApi;
pub use status::code_name;

use crate::error::Error;

/// Runs `call`, which changes nothing, for the tenant of `request`: the
/// counterpart of [`audit::audited`] for calls the audit trail leaves out.
async fn unaudited<R, T, F, Fut>(request: Request<R>, call: F) -> Result<Response<T>, Status>
where
    F: FnOnce(String, R) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let tenant = auth::tenant_of(&request);
    call(tenant, request.into_inner())
        .await
        .map(Response::new)
        .map_err(Status::from)
}
