//! The one place where domain errors become gRPC statuses.

use tonic::{Code, Status};

use crate::error::{Error, ErrorKind};

pub use crate::telemetry::code_name;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let code = match error.kind() {
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::OutOfRange => Code::OutOfRange,
            ErrorKind::ResourceExhausted => Code::ResourceExhausted,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorKind::Aborted => Code::Aborted,
            ErrorKind::Internal => Code::Internal,
        };
        Status::new(code, error.message())
    }
}
