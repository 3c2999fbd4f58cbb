//! Every gRPC call observed from outside the services: a tower layer that
//! opens the call's `grpc` span (continuing the caller's trace when its
//! metadata carries a W3C `traceparent`), and when the response ends (a
//! unary answer, or the last frame of a stream) records its status code in
//! the span, and the call and how long it took in [`Metrics`].
//!
//! The status is read where gRPC puts it: the response headers of a
//! trailers-only answer (an error before any message), else the trailers
//! that end the body. A body dropped before its end is a call the client
//! cancelled.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;

use super::codes::code_name;
use super::metrics::Metrics;
use super::traces;

/// The label of any path the server does not serve, so that callers'
/// made-up paths add no series.
const UNKNOWN: &str = "unknown";

/// The methods the server serves, as full paths (`/paddock.v1.SandboxService/GetSandbox`).
pub type KnownMethods = Arc<HashSet<String>>;

/// Observes every call of the service it wraps.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
    known: KnownMethods,
}

impl ObserveLayer {
    /// Counts calls in `metrics`, labelling by method only the paths in
    /// `known`.
    pub fn new(metrics: Arc<Metrics>, known: KnownMethods) -> Self {
        Self { metrics, known }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ObserveLayer`] makes.
#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    layer: ObserveLayer,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Observe<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<Observed<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = method_labels(&self.layer.known, request.uri().path());
        let span = tracing::info_span!(
            "grpc",
            otel.name = format_args!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            tenant = tracing::field::Empty,
            sandbox_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        if let Some(trace_id) = traces::continue_trace(&span, request.headers()) {
            span.record("trace_id", trace_id);
        }
        let call = Call {
            metrics: self.layer.metrics.clone(),
            method: (service, method),
            began: Instant::now(),
            span: span.clone(),
        };
        // The handler runs in the call's span, so what it does (store,
        // provider and agent calls) are its children.
        let answer = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let response = answer.await?;
                let (parts, body) = response.into_parts();
                // A trailers-only answer carries its status in the headers and
                // an empty body.
                let status = parts.headers.get("grpc-status").map(code_of);
                let mut observed = Observed {
                    inner: body,
                    call: Some(call),
                };
                if let Some(code) = status {
                    observed.finish(code);
                } else if parts.status != http::StatusCode::OK {
                    observed.finish(code_of_http(parts.status));
                }
                Ok(http::Response::from_parts(parts, observed))
            }
            .instrument(span),
        )
    }
}

/// One call under way; its span lasts as long as it does.
struct Call {
    metrics: Arc<Metrics>,
    method: (String, String),
    began: Instant,
    span: tracing::Span,
}

impl Call {
    fn finish(self, code: Code) {
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_server_error(code) {
            self.span.record("otel.status_code", "error");
        }
        let (service, method) = &self.method;
        self.metrics
            .rpc_finished(service, method, code_name(code), self.began.elapsed());
    }
}

/// A response body that reports its call's end.
pub struct Observed<B> {
    inner: B,
    /// The call, until its end is reported.
    call: Option<Call>,
}

impl<B> Observed<B> {
    fn finish(&mut self, code: Code) {
        if let Some(call) = self.call.take() {
            call.finish(code);
        }
    }
}

impl<B> Drop for Observed<B> {
    fn drop(&mut self) {
        // Dropped before its end: the client went away.
        self.finish(Code::Cancelled);
    }
}

impl<B: Body + Unpin> Body for Observed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers.get("grpc-status").map_or(Code::Unknown, code_of);
                    self.finish(code);
                }
            }
            // The body failed: the call ended without a status.
            Poll::Ready(Some(Err(_))) => self.finish(Code::Unknown),
            // Ended without trailers: not a well-formed gRPC answer.
            Poll::Ready(None) => self.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The (service, method) labels of `path`: its two parts when the server
/// serves it, else [`UNKNOWN`] twice.
fn method_labels(known: &HashSet<String>, path: &str) -> (String, String) {
    if known.contains(path)
        && let Some((service, method)) = path.trim_start_matches('/').split_once('/')
    {
        return (service.to_owned(), method.to_owned());
    }
    (UNKNOWN.to_owned(), UNKNOWN.to_owned())
}

/// Whether a call ending with `code` failed on the server's side, as
/// OpenTelemetry's conventions for gRPC servers count errors (a caller's
/// mistake such as NOT_FOUND is not one).
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

fn code_of(value: &http::HeaderValue) -> Code {
    value
        .to_str()
        .ok()
        .and_then(|text| text.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from_i32)
}

/// The gRPC code for an HTTP status that is not 200, as the gRPC spec maps
/// them for clients.
fn code_of_http(status: http::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_are_labelled_by_name() {
        let known: HashSet<String> = ["/paddock.v1.SandboxService/GetSandbox".to_owned()].into();
        assert_eq!(
            method_labels(&known, "/paddock.v1.SandboxService/GetSandbox"),
            ("paddock.v1.SandboxService".into(), "GetSandbox".into())
        );
        assert_eq!(
            method_labels(&known, "/made.up/Path"),
            ("unknown".into(), "unknown".into())
        );
    }
}
