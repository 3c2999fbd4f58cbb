//! The proxy's own answers: a sentence with a status, for a request it
//! refuses or a domain error.

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;

use crate::error::{Error, ErrorKind};

/// The body of the proxy's answers: the sandbox server's, or the proxy's
/// own sentence.
pub(super) type Body = BoxBody<Bytes, hyper::Error>;

/// An answer of the proxy's own: `status` and a sentence.
pub(super) fn plain(status: StatusCode, text: impl Into<String>) -> http::Response<Body> {
    let mut text = text.into();
    text.push('\n');
    let body = http_body_util::Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The proxy's answer to a domain error, with its sentence.
pub(super) fn error_answer(error: &Error) -> http::Response<Body> {
    let status = match error.kind() {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidArgument | ErrorKind::OutOfRange => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::FailedPrecondition | ErrorKind::Aborted => StatusCode::BAD_GATEWAY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::AlreadyExists | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = if error.kind() == ErrorKind::Internal {
        "the preview proxy failed; the server's log says why"
    } else {
        error.message()
    };
    plain(status, message)
}
