//! `--metrics-listen`: the exposition scraped over plain HTTP, parsed by
//! `prometheus_client`'s OpenMetrics parser, moving as calls are made.

use std::collections::BTreeMap;

use paddock::pb;

use crate::common::{self, TestServer};

/// Scrapes `url` and parses it with the strict OpenMetrics parser, printing
/// each sample as `name{label="value",...} value` in a JSON object.
const SCRAPE: &str = r#"
import json, sys, urllib.request
from prometheus_client.openmetrics.parser import text_string_to_metric_families
with urllib.request.urlopen(sys.argv[1]) as answer:
    content_type = answer.headers["Content-Type"]
    text = answer.read().decode()
samples = {}
for family in text_string_to_metric_families(text):
    for sample in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        samples[f"{sample.name}{{{labels}}}"] = sample.value
print(json.dumps({"content_type": content_type, "samples": samples}))
"#;

/// One scrape: every sample by name and sorted labels.
struct Scrape {
    content_type: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    async fn of(server: &TestServer) -> Option<Self> {
        let python = common::program_from("PADDOCK_TEST_PYTHON")?;
        let addr = server.metrics_addr.expect("the server serves metrics");
        let output = tokio::process::Command::new(python)
            .args(["-c", SCRAPE, &format!("http://{addr}/metrics")])
            .output()
            .await
            .expect("run python");
        assert!(
            output.status.success(),
            "the scrape failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let samples = parsed["samples"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, value)| (name.clone(), value.as_f64().unwrap()))
            .collect();
        Some(Self {
            content_type: parsed["content_type"].as_str().unwrap().to_owned(),
            samples,
        })
    }

    /// The sample `key`, 0 when absent.
    fn value(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }
}

fn rpc(method: &str, code: &str, service: &str) -> String {
    format!(r#"{{code="{code}",method="{method}",service="paddock.v1.{service}"}}"#)
}

#[tokio::test]
async fn counters_and_histograms_move_with_the_calls_made() {
    let server = TestServer::start_with(|args| {
        args.metrics_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let Some(before) = Scrape::of(&server).await else {
        return;
    };
    assert!(
        before
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        before.content_type
    );
    assert!(
        before
            .samples
            .keys()
            .any(|name| name.starts_with("paddock_build_info{version=")),
        "{:?}",
        before.samples.keys()
    );

    // A known sequence: a create, three commands, a missing sandbox, a
    // 100-byte write and a read of it.
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await;
    for _ in 0..3 {
        let ran = server.run(&sandbox.id, &["echo", "hi"]).await;
        assert_eq!(ran.stdout, b"hi\n");
    }
    let missing = server
        .sandboxes()
        .await
        .get_sandbox(pb::GetSandboxRequest {
            sandbox_id: paddock::ids::new_sandbox_id(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    server
        .write(&sandbox.id, "/tmp/hundred", &[b'x'; 100])
        .await;

    let after = Scrape::of(&server).await.unwrap();
    let delta = |key: &str| after.value(key) - before.value(key);
    let run_ok = rpc("RunCommand", "OK", "ExecService");
    assert_eq!(delta(&format!("paddock_rpcs_total{run_ok}")), 3.0);
    assert_eq!(
        delta(&format!("paddock_rpc_duration_seconds_count{run_ok}")),
        3.0
    );
    assert!(delta(&format!("paddock_rpc_duration_seconds_sum{run_ok}")) > 0.0);
    let not_found = rpc("GetSandbox", "NOT_FOUND", "SandboxService");
    assert_eq!(delta(&format!("paddock_rpcs_total{not_found}")), 1.0);
    assert_eq!(delta(r#"paddock_commands_started_total{kind="run"}"#), 3.0);
    assert_eq!(
        delta(r#"paddock_exec_bytes_total{direction="stdout"}"#),
        9.0
    );
    assert_eq!(
        delta(r#"paddock_transfer_bytes_total{direction="upload"}"#),
        100.0
    );
    assert_eq!(
        delta(r#"paddock_sandbox_create_duration_seconds_count{provider="process"}"#),
        1.0
    );
    assert_eq!(
        after.value(r#"paddock_sandboxes{provider="process",state="RUNNING"}"#),
        1.0
    );
    // The running sandbox's own figures, measured at the scrape (this
    // server holds the reaper's lease).
    let sandbox_labels = format!(r#"{{provider="process",sandbox_id="{}"}}"#, sandbox.id);
    assert!(
        after.value(&format!("paddock_sandbox_memory_bytes{sandbox_labels}")) > 0.0,
        "{:?}",
        after
            .samples
            .keys()
            .filter(|k| k.starts_with("paddock_sandbox_"))
            .collect::<Vec<_>>()
    );
    assert!(after.value(&format!("paddock_sandbox_pids{sandbox_labels}")) >= 1.0);
    assert!(after.samples.contains_key(&format!(
        "paddock_sandbox_cpu_seconds_total{sandbox_labels}"
    )));
    assert_eq!(after.value("paddock_sandbox_figures_left_out{}"), 0.0);
    assert_eq!(after.value("paddock_reaper_lease_held{}"), 1.0);
    // Histograms are cumulative: the +Inf bucket holds every call.
    assert_eq!(
        after.value(
            r#"paddock_rpc_duration_seconds_bucket{code="OK",le="+Inf",method="RunCommand",service="paddock.v1.ExecService"}"#
        ),
        3.0
    );

    // Deleted, the sandbox leaves the census.
    server
        .sandboxes()
        .await
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();
    let deleted = Scrape::of(&server).await.unwrap();
    assert_eq!(
        deleted.value(r#"paddock_sandboxes{provider="process",state="RUNNING"}"#),
        0.0
    );
    assert!(
        !deleted
            .samples
            .contains_key(&format!("paddock_sandbox_memory_bytes{sandbox_labels}")),
        "a deleted sandbox's figures stay"
    );
}

#[tokio::test]
async fn the_listener_names_its_one_path() {
    let server = TestServer::start_with(|args| {
        args.metrics_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let addr = server.metrics_addr.unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(
        answer.ends_with("Paddock serves its metrics at /metrics\n"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_taken_metrics_address_stops_the_start_with_a_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let temp = tempfile::tempdir().unwrap();
    let config = paddock::config::ServerConfig::resolve(paddock::config::ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(temp.path().into()),
        provider: Some("process".into()),
        metrics_listen: Some(format!("127.0.0.1:{port}")),
        ..Default::default()
    })
    .unwrap();
    let error = match paddock::server::Server::start(config).await {
        Ok(_) => panic!("started on a taken metrics port"),
        Err(error) => format!("{error:#}"),
    };
    assert!(
        error.contains("cannot serve metrics on 127.0.0.1:"),
        "{error}"
    );
    assert!(error.contains("--metrics-listen"), "{error}");
}

#[tokio::test]
async fn warm_pool_claims_refills_and_readiness_are_exported() {
    let server = TestServer::start_with(|args| {
        args.metrics_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let template = common::warm::warm_template(&server, "metered", 2).await;
    common::warm::wait_until_ready(&server, "metered", 2).await;
    server
        .running_sandbox(pb::CreateSandboxRequest {
            template: "metered".into(),
            ..Default::default()
        })
        .await;
    common::warm::wait_until_ready(&server, "metered", 2).await;
    let id = &template.id;
    let ready = format!(r#"paddock_warm_pool_ready{{template_id="{id}"}}"#);
    // The gauge follows the refill that the API already shows.
    let mut scrape = None;
    for _ in 0..50 {
        let Some(now) = Scrape::of(&server).await else {
            return;
        };
        let done = now.value(&ready) == 2.0;
        scrape = Some(now);
        if done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let scrape = scrape.unwrap();
    assert_eq!(scrape.value(&ready), 2.0, "{:?}", scrape.samples);
    assert_eq!(
        scrape.value(&format!(
            r#"paddock_warm_pool_claims_total{{result="hit",template_id="{id}"}}"#
        )),
        1.0,
        "{:?}",
        scrape.samples
    );
    assert_eq!(
        scrape.value(&format!(
            r#"paddock_warm_pool_claims_total{{result="miss",template_id="{id}"}}"#
        )),
        0.0
    );
    // Two made to fill it, one after the claim.
    assert_eq!(
        scrape.value("paddock_warm_pool_refill_seconds_count{}"),
        3.0
    );
}
