//! The one error type of the domain, with a small, deliberate set of kinds.
//!
//! Every layer below the API returns [`Error`]; `api::status` maps it to a
//! gRPC status in exactly one place.

use std::fmt;

/// What went wrong, in the terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named thing does not exist.
    NotFound,
    /// The thing to create exists already.
    AlreadyExists,
    /// The request breaks a rule; the message names the field and the rule.
    InvalidArgument,
    /// The system is not in a state that allows the action.
    FailedPrecondition,
    /// A position or range lies outside what exists (an offset past the end
    /// of a file).
    OutOfRange,
    /// A quota or limit is used up.
    ResourceExhausted,
    /// The caller is not authenticated.
    Unauthenticated,
    /// The caller may not do this.
    PermissionDenied,
    /// A dependency (store, provider) cannot be reached now; a retry may work.
    Unavailable,
    /// A deadline passed before the work finished.
    DeadlineExceeded,
    /// Work already under way was cut off (a forwarded connection that the
    /// sandbox's server reset).
    Aborted,
    /// A bug or an unexpected failure; details go to the log, not the caller.
    Internal,
}

/// A domain error: a kind and a sentence for the caller.
///
/// The message is shown to API callers as it is, so it must never carry
/// secrets or internal dumps; for [`ErrorKind::Internal`] it stays generic and
/// the cause is logged where the error is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// The result type of the domain.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a message shown to the caller.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The thing does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// The thing exists already.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }

    /// The field `field` breaks a rule, explained by `rule`.
    pub fn invalid_argument(field: &str, rule: impl fmt::Display) -> Self {
        Self::new(ErrorKind::InvalidArgument, format!("{field}: {rule}"))
    }

    /// The current state does not allow the action.
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::FailedPrecondition, message)
    }

    /// The caller may not do this (a policy forbids it); the message says
    /// which policy.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }

    /// A quota or limit is reached; the message names it.
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceExhausted, message)
    }

    /// A dependency cannot be reached now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// An unexpected failure. The cause is logged here, with `context`; the
    /// caller sees only that something went wrong inside the server.
    pub fn internal(context: &str, cause: impl fmt::Display) -> Self {
        tracing::error!(context, error = %cause, "internal error");
        Self::new(
            ErrorKind::Internal,
            format!("internal error while {context}; the server log has the details"),
        )
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The sentence for the caller.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
