//! [`Traced`]: the agent channel with each call in an `agent` span, a
//! child of whatever called, and the trace context passed on in the
//! call's metadata (a W3C `traceparent`), so that one trace shows a
//! request's whole route through the server to the sandbox.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::Service;
use tracing::Instrument;

use crate::telemetry::traces;

/// A service whose calls are traced; see the module docs.
#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
}

impl<S> Traced<S> {
    /// `inner`, traced.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> Service<http::Request<B>> for Traced<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // Until the answer's headers: a stream's body is not waited for.
        let span = tracing::info_span!(
            "agent",
            otel.name = format_args!("agent {}", request.uri().path().trim_start_matches('/')),
            otel.kind = "client",
            rpc.system = "grpc",
        );
        span.in_scope(|| traces::pass_on(request.headers_mut()));
        Box::pin(self.inner.call(request).instrument(span))
    }
}
