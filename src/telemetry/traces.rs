//! Traces: spans exported over OTLP/gRPC to a collector, when one is named
//! (`--otlp-endpoint`, or the standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! / `OTEL_EXPORTER_OTLP_ENDPOINT`), and the W3C trace context carried in
//! and out of calls.
//!
//! Spans come from `tracing`: the layer in [`otel_layer`] turns this
//! crate's spans (a `grpc` span per call, `store`, `provider` and `agent`
//! spans beneath it, the domain's `sandbox.*` spans) into OpenTelemetry
//! spans, batched by the SDK on a thread of its own; when the collector is
//! away, batches fail in the background and, past the queue's bound,
//! spans are dropped: a call never waits on the collector.

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The service name spans carry unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` names another.
const DEFAULT_SERVICE_NAME: &str = "paddock";

/// The propagator, set once traces are on; `None` while they are off, so
/// that calls skip the trace context's work.
static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();

/// Where spans go, or `None` when nothing asks for them: the flag, else the
/// standard variables; `OTEL_SDK_DISABLED=true` and
/// `OTEL_TRACES_EXPORTER=none` turn them off whatever else says.
pub fn otlp_endpoint(flag: Option<&str>) -> Option<String> {
    let variable = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if variable("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || variable("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    flag.map(str::to_owned)
        .or_else(|| variable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| variable("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

/// The tracer provider exporting to `endpoint`, and the `tracing` layer
/// feeding it. Must run inside a Tokio runtime (the exporter's gRPC
/// channel lives on it).
pub(super) fn otel_layer<S>(
    endpoint: &str,
) -> anyhow::Result<(
    SdkTracerProvider,
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
)>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot export traces to {endpoint}: {e}"))?;
    let mut resource = Resource::builder();
    let named_elsewhere = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named_elsewhere {
        resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("paddock");
    let _ = PROPAGATOR.set(TraceContextPropagator::new());
    // Without the per-poll busy/idle clock readings and the source location
    // and thread of every span: each costs time on every call and bytes in
    // every batch, and a span's name says where it is.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false);
    Ok((provider, layer))
}

/// Makes `span` a child of the trace context in `headers` (a W3C
/// `traceparent`, and `tracestate`), when traces are on and there is one,
/// and returns the span's trace id as hex.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) -> Option<String> {
    let propagator = PROPAGATOR.get()?;
    let parent = propagator.extract(&HeaderExtractor(headers));
    let _ = span.set_parent(parent);
    let trace_id = span.context().span().span_context().trace_id();
    Some(trace_id.to_string())
}

/// Writes the trace context of the current span into `headers`, so that
/// the next hop continues the trace; nothing when traces are off.
pub fn pass_on(headers: &mut http::HeaderMap) {
    if let Some(propagator) = PROPAGATOR.get() {
        let context = tracing::Span::current().context();
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
