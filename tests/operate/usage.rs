//! `GetSandboxMetrics` on every provider: CPU that rises under a busy
//! loop, memory a process holds, and the refusals of sandboxes that are not
//! running or not there.

use std::time::Duration;

use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;

use crate::common::{self, Provider, TestServer};

crate::on_every_provider!(cpu_and_memory_are_measured_as_they_are_used);

const MIB: i64 = 1 << 20;

async fn metrics_of(server: &TestServer, sandbox_id: &str) -> pb::SandboxMetrics {
    server
        .sandboxes()
        .await
        .get_sandbox_metrics(pb::GetSandboxMetricsRequest {
            sandbox_id: sandbox_id.to_owned(),
        })
        .await
        .expect("GetSandboxMetrics")
        .into_inner()
        .metrics
        .expect("metrics")
}

async fn start(server: &TestServer, sandbox_id: &str, line: &str) {
    ExecServiceClient::new(server.channel().await)
        .start_command(pb::StartCommandRequest {
            sandbox_id: sandbox_id.to_owned(),
            spec: Some(pb::CommandSpec {
                shell: line.to_owned(),
                ..Default::default()
            }),
        })
        .await
        .expect("StartCommand");
}

fn seconds(duration: Option<&prost_types::Duration>) -> f64 {
    duration.map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

async fn cpu_and_memory_are_measured_as_they_are_used(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await;
    let idle = metrics_of(&server, &sandbox.id).await;
    assert_eq!(idle.sandbox_id, sandbox.id);
    assert!(idle.pids >= 1, "{idle:?}");
    assert!(idle.memory_bytes > 0, "{idle:?}");
    assert!(idle.cpu_share < 0.5, "an idle sandbox is busy: {idle:?}");
    assert!(seconds(idle.cpu_window.as_ref()) > 0.0, "{idle:?}");
    // A pod's disk use is not measured (its workdir is a claim the agent
    // cannot size cheaply); every other provider measures it.
    assert_eq!(
        idle.disk_bytes.is_some(),
        provider != Provider::Kubernetes,
        "{idle:?}"
    );
    if provider.is_docker() {
        let limits = idle.limits.as_ref().expect("Docker sandboxes have limits");
        assert_eq!(limits.cpu_millis, 1000);
        assert!(idle.network_received_bytes.is_some(), "{idle:?}");
    }

    start(&server, &sandbox.id, "dd if=/dev/zero of=/dev/null bs=1M").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let busy = metrics_of(&server, &sandbox.id).await;
    assert!(
        seconds(busy.cpu_time.as_ref()) > seconds(idle.cpu_time.as_ref()) + 0.5,
        "CPU time did not rise: {idle:?} then {busy:?}"
    );
    assert!(busy.cpu_share > 0.5, "a busy loop shows {busy:?}");

    // dd reads 100 MiB into its buffer, then waits on a pipe no one reads.
    start(
        &server,
        &sandbox.id,
        "dd if=/dev/zero bs=100M count=1 2>/dev/null | sleep 60",
    )
    .await;
    let holding = common::eventually(Duration::from_secs(20), "100 MiB in use", || async {
        let now = metrics_of(&server, &sandbox.id).await;
        (now.memory_bytes >= idle.memory_bytes + 95 * MIB).then_some(now)
    })
    .await;
    if let Some(peak) = holding.memory_peak_bytes {
        assert!(peak >= holding.memory_bytes, "{holding:?}");
    }
}

#[tokio::test]
async fn only_a_running_sandbox_of_ones_own_is_measured() {
    let server = TestServer::start().await;
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await;
    let mut client = server.sandboxes().await;
    let ask = |sandbox_id: String| pb::GetSandboxMetricsRequest { sandbox_id };

    let missing = client
        .get_sandbox_metrics(ask(paddock::ids::new_sandbox_id()))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    let malformed = client
        .get_sandbox_metrics(ask("not an id".into()))
        .await
        .unwrap_err();
    assert_eq!(
        malformed.code(),
        tonic::Code::InvalidArgument,
        "{malformed:?}"
    );

    client
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();
    let stopped = client
        .get_sandbox_metrics(ask(sandbox.id.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        stopped.code(),
        tonic::Code::FailedPrecondition,
        "{stopped:?}"
    );
    assert!(stopped.message().contains("STOPPED"), "{stopped:?}");
}
