//! The API server's answers, as the domain's errors.

use crate::error::Error;

/// The API server's status code, when it answered with one.
pub(super) fn code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

pub(super) fn is_not_found(error: &kube::Error) -> bool {
    code(error) == Some(404)
}

pub(super) fn is_already_exists(error: &kube::Error) -> bool {
    code(error) == Some(409)
}

/// `error` from doing `what`: INVALID_ARGUMENT when the API server refused
/// an object as invalid (its message says which field), FAILED_PRECONDITION
/// when Paddock lacks a permission or a quota in the namespace stops it,
/// UNAVAILABLE when the API server cannot be reached or is failing.
pub(super) fn api_error(what: &str, error: kube::Error) -> Error {
    match &error {
        kube::Error::Api(status) => match status.code {
            422 | 400 => Error::invalid_argument(
                "spec",
                format!(
                    "the Kubernetes API server refused {what}: {}",
                    status.message
                ),
            ),
            401 | 403 => Error::failed_precondition(format!(
                "the Kubernetes API server does not let this server go on {what}: {} (check \
                 the Role the chart makes)",
                status.message
            )),
            404 => Error::not_found(format!("{what}: {}", status.message)),
            _ => Error::unavailable(format!(
                "the Kubernetes API server failed {what}: {}",
                status.message
            )),
        },
        _ => Error::unavailable(format!(
            "cannot reach the Kubernetes API server while {what}: {error}"
        )),
    }
}
