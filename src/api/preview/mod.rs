//! The preview proxy (`--preview-listen`): plain HTTP/1.1, WebSocket
//! upgrades included, to the TCP servers inside sandboxes, so that a
//! browser reaches a dev server or a notebook an agent started.
//!
//! A request names a sandbox and port by host name or by path (urls.rs).
//! It is admitted (admit.rs) with the tenant's API key, a preview token
//! (token.rs) or, for a port its owner made public, with nothing; then it
//! goes to the sandbox's agent as a port forward and on to the sandbox's
//! server (upstream.rs). Another tenant's sandbox does not exist here
//! either.

mod admit;
mod answer;
mod proxy;
mod site;
mod token;
mod upstream;
mod urls;

pub use proxy::{PreviewProxy, serve};
pub use site::{PreviewSite, TOKEN_COOKIE, TOKEN_HEADER, TOKEN_QUERY};
pub use token::{Grant, PreviewTokens, SECRET_NAME};
pub use urls::PreviewUrls;
