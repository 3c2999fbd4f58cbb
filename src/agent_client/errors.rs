//! What an agent's error becomes: the codes a caller can act on keep their
//! meaning (with the agent's sentence, cut short), anything else says the
//! agent is unreachable or broken. An agent is untrusted, so its message is
//! bounded and never taken for the server's own.

use tonic::{Code, Status};

use crate::error::{Error, ErrorKind};

/// The longest agent error message passed on, in characters.
const MAX_AGENT_MESSAGE_CHARS: usize = 1024;

/// The domain error for an agent's answer `status`.
pub(super) fn from_agent(status: Status) -> Error {
    let message: String = status
        .message()
        .chars()
        .take(MAX_AGENT_MESSAGE_CHARS)
        .collect();
    let kind = match status.code() {
        Code::InvalidArgument => ErrorKind::InvalidArgument,
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists => ErrorKind::AlreadyExists,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        Code::OutOfRange => ErrorKind::OutOfRange,
        Code::FailedPrecondition => ErrorKind::FailedPrecondition,
        Code::ResourceExhausted => ErrorKind::ResourceExhausted,
        Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
        Code::Aborted => ErrorKind::Aborted,
        // An agent older than this server: it lacks the call.
        Code::Unimplemented => {
            return Error::failed_precondition(format!(
                "the sandbox's agent is older than this server and cannot do this: {message}"
            ));
        }
        // The agent ended the call (it is stopping): the sandbox cannot
        // answer now, which is not the caller cancelling.
        Code::Cancelled | Code::Unavailable | Code::Unknown => {
            return Error::unavailable(format!("the sandbox's agent cannot be reached: {message}"));
        }
        _ => {
            return Error::new(
                ErrorKind::Internal,
                format!("the sandbox's agent failed: {message}"),
            );
        }
    };
    Error::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_a_caller_can_act_on_pass_and_the_rest_are_reworded() {
        let passed = from_agent(Status::out_of_range("offset: 9 is past the end"));
        assert_eq!(passed.kind(), ErrorKind::OutOfRange);
        assert_eq!(passed.message(), "offset: 9 is past the end");
        let gone = from_agent(Status::unknown("transport error"));
        assert_eq!(gone.kind(), ErrorKind::Unavailable);
        assert!(
            gone.message()
                .starts_with("the sandbox's agent cannot be reached")
        );
        let broken = from_agent(Status::internal("x".repeat(5000)));
        assert_eq!(broken.kind(), ErrorKind::Internal);
        assert!(broken.message().len() < 1100, "bounded");
        let unauthenticated = from_agent(Status::unauthenticated("who?"));
        assert_eq!(unauthenticated.kind(), ErrorKind::Internal);
    }
}
