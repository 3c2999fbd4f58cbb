//! Paddock from a stock Python gRPC client (grpcio, through clients/python)
//! beside the Docker Engine API from the `docker` package, as a Python
//! agent would call either: python_client.py does the calls, alternated,
//! and prints each operation's samples; this turns them into rows.

use std::process::Command;
use std::time::Duration;

use crate::report::{Goal, Measured, Row, Stats};
use crate::server::ServerProcess;
use crate::{Plan, skip};

const SECTION: &str =
    "Docker provider from Python (floor: the `docker` package on the same engine and container)";

/// The Python with grpcio, protobuf and `docker` (scripts/bench and
/// scripts/test install it).
const PYTHON: &str = "PADDOCK_TEST_PYTHON";

/// The bytes each way in the transfer rows.
fn transfer_bytes(plan: &Plan) -> u64 {
    if plan.full { 64 << 20 } else { 1 << 20 }
}

#[derive(serde::Deserialize)]
struct Sampled {
    operation: String,
    paddock: Vec<f64>,
    floor_name: String,
    floor: Vec<f64>,
    bytes: u64,
}

fn durations(seconds: &[f64]) -> Vec<Duration> {
    seconds
        .iter()
        .map(|s| Duration::from_secs_f64(*s))
        .collect()
}

pub fn run(plan: &Plan, server: &ServerProcess, id: &str, container: &str) -> Vec<Row> {
    let Some(python) = std::env::var_os(PYTHON) else {
        skip(
            "Python client",
            &format!("{PYTHON} names no Python with grpcio and docker (scripts/bench sets it)"),
        );
        return Vec::new();
    };
    println!("docker provider from Python: measuring");
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(python)
        .arg(format!("{root}/benches/paddock/python_client.py"))
        .args(["--address", &format!("http://{}", server.addr)])
        .args(["--sandbox", id, "--container", container])
        .args(["--command-rounds", &plan.rounds.to_string()])
        .args(["--transfer-rounds", &(plan.transfer_rounds + 2).to_string()])
        .args(["--bytes", &transfer_bytes(plan).to_string()])
        .env("PYTHONPATH", format!("{root}/clients/python"))
        .output()
        .expect("the Python benchmark runs");
    assert!(
        output.status.success(),
        "python_client.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("JSON lines")
        .lines()
        .map(|line| {
            let sampled: Sampled = serde_json::from_str(line).expect("one operation's samples");
            let (ours, theirs) = (durations(&sampled.paddock), durations(&sampled.floor));
            let (paddock, floor, goal) = if sampled.bytes == 0 {
                (
                    Measured::Latency(Stats::of(&ours)),
                    Measured::Latency(Stats::of(&theirs)),
                    Goal::MedianUnder(Duration::from_micros(2500)),
                )
            } else {
                let bytes = sampled.bytes;
                let at_least = if sampled.operation.contains("Upload") {
                    1.2
                } else {
                    0.9
                };
                (
                    Measured::Transfer {
                        time: Stats::of(&ours),
                        bytes,
                    },
                    Measured::Transfer {
                        time: Stats::of(&theirs),
                        bytes,
                    },
                    Goal::ThroughputAtLeast(at_least),
                )
            };
            Row {
                section: SECTION.to_owned(),
                operation: sampled.operation,
                paddock,
                floor: Some((sampled.floor_name, floor)),
                goal: Some(goal),
            }
        })
        .collect()
}
