//! What exporting traces costs: the same calls on two servers side by side,
//! one exporting every span over OTLP/gRPC to a collector that answers (in
//! this process: the collector's `TraceService`, counting what it gets),
//! the other with traces off, which is the floor. Process sandboxes, so
//! the section needs no engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use paddock::pb;

use crate::ops::Clients;
use crate::report::{Goal, Measured, Row, Stats};
use crate::server::ServerProcess;
use crate::{Plan, side_by_side};

const SECTION: &str = "Traces exported over OTLP next to traces off (the floor: the same call on a server with traces off)";

/// A collector that answers every export and counts the spans.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn start_collector(collector: Collector) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let addr = listener.local_addr().expect("collector address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

fn row(
    operation: &str,
    traced: Vec<std::time::Duration>,
    untraced: Vec<std::time::Duration>,
) -> Row {
    Row {
        section: SECTION.to_owned(),
        operation: operation.to_owned(),
        paddock: Measured::Latency(Stats::of(&traced)),
        floor: Some((
            "the same, traces off".to_owned(),
            Measured::Latency(Stats::of(&untraced)),
        )),
        goal: Some(Goal::TimeAtMost(1.05)),
    }
}

pub async fn run(plan: &Plan) -> Vec<Row> {
    println!("tracing: measuring");
    let collector = Collector::default();
    let endpoint = start_collector(collector.clone()).await;
    // Batches every 200 ms rather than the default 5 s, so that exporting
    // happens while the calls are measured.
    let traced_server = ServerProcess::start_with_env(
        "process",
        "auto",
        &["--otlp-endpoint", &endpoint],
        &[("OTEL_BSP_SCHEDULE_DELAY", "200")],
    );
    let plain_server = ServerProcess::start("process", "auto");
    let traced = Clients::new(traced_server.connect().await);
    let plain = Clients::new(plain_server.connect().await);
    let traced_id = traced
        .clone()
        .create(pb::CreateSandboxRequest::default())
        .await;
    let plain_id = plain
        .clone()
        .create(pb::CreateSandboxRequest::default())
        .await;

    let run = |clients: &Clients, id: &str| {
        let mut c = clients.clone();
        let id = id.to_owned();
        async move {
            c.run(&id, &["true"]).await;
        }
    };
    let (on, off) = side_by_side(
        plan.rounds,
        plan.rounds / 10,
        || run(&traced, &traced_id),
        || run(&plain, &plain_id),
        || async {},
    )
    .await;
    let mut rows = vec![row("`RunCommand` of `true`", on, off)];

    let get = |clients: &Clients, id: &str| {
        let mut c = clients.clone();
        let request = pb::GetSandboxRequest {
            sandbox_id: id.to_owned(),
        };
        async move {
            c.sandboxes.get_sandbox(request).await.expect("GetSandbox");
        }
    };
    let (on, off) = side_by_side(
        plan.rounds,
        plan.rounds / 10,
        || get(&traced, &traced_id),
        || get(&plain, &plain_id),
        || async {},
    )
    .await;
    rows.push(row("`GetSandbox`", on, off));
    traced.clone().delete(&traced_id).await;
    plain.clone().delete(&plain_id).await;
    drop(traced_server);
    println!(
        "tracing: the collector received {} spans",
        collector.spans.load(Ordering::Relaxed)
    );
    rows
}
