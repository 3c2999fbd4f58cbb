//! Proto messages to validated domain values and back: every rule a request
//! must follow is checked here, once, before the domain sees it.
//!
//! Messages are destructured without `..`, so a field added to a proto fails
//! the build until it is handled here.

pub mod exec;
mod fields;
pub mod file;
mod metadata;
pub mod port;
mod sandbox;
pub mod template;
mod usage;
pub mod volume;

pub use sandbox::{
    DEFAULT_PAGE_SIZE, DEFAULT_WORKDIR, MAX_PAGE_SIZE, create_request, event_to_pb, list_query,
    provider_to_pb, sandbox_to_pb, update_request,
};

pub use fields::sandbox_id;
pub use usage::usage_to_pb;
