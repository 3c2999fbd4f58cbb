//! What the server tells its operators: logs through `tracing`. A leaf: it
//! names the targets it treats specially, and the layers that write to them
//! use its names.

mod codes;
mod logs;

pub use codes::code_name;
pub use logs::{AUDIT_TARGET, LogFormat, init};
