//! The engine's errors as domain errors.

use crate::error::{Error, ErrorKind};

/// Whether the engine answered 404.
pub(super) fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

pub(super) fn status_code(error: &bollard::errors::Error) -> Option<u16> {
    match error {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// An engine failure while `context`, as a domain error: the engine's 4xx
/// answers keep their meaning, everything else means the engine is not
/// usable now.
pub(super) fn engine_error(context: &str, error: impl Into<EngineFailure>) -> Error {
    let EngineFailure { status, message } = error.into();
    let message = format!("{context}: the Docker engine answered: {message}");
    match status {
        Some(404) => Error::not_found(message),
        Some(409) => Error::new(ErrorKind::FailedPrecondition, message),
        Some(400) => Error::failed_precondition(message),
        _ => Error::unavailable(message),
    }
}

/// An engine error's status (when the engine answered) and text.
pub(super) struct EngineFailure {
    status: Option<u16>,
    message: String,
}

impl From<bollard::errors::Error> for EngineFailure {
    fn from(error: bollard::errors::Error) -> Self {
        let status = status_code(&error);
        let message = match error {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message,
            other => other.to_string(),
        };
        Self { status, message }
    }
}
