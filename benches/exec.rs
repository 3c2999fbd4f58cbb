//! Exec round trips through Paddock next to the floor beneath them, in one
//! run, alternating the two.
//!
//! `cargo bench --bench exec` runs it in full; any other invocation (such as
//! `cargo test --bench exec`, which CI runs) is a short smoke run that only
//! checks that it works. It prints min, median and p95 per operation and the
//! ratio Paddock/floor. The floor of the process provider is a plain
//! fork/exec of the same program from the same process.

use std::time::{Duration, Instant};

use paddock::config::{ServeArgs, ServerConfig};
use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use paddock::server::{BoundAddr, Server};
use tokio_stream::wrappers::ReceiverStream;

struct Stats {
    min: Duration,
    median: Duration,
    p95: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        min: samples[0],
        median: at(0.5),
        p95: at(0.95),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn report(name: &str, paddock: Stats, floor: Stats) {
    println!(
        "{name:<34} paddock min {} p50 {} p95 {} | floor min {} p50 {} p95 {} | ratio p50 {:.2}x",
        ms(paddock.min),
        ms(paddock.median),
        ms(paddock.p95),
        ms(floor.min),
        ms(floor.median),
        ms(floor.p95),
        paddock.median.as_secs_f64() / floor.median.as_secs_f64()
    );
}

fn fork_exec_true() -> Duration {
    let started = Instant::now();
    let status = std::process::Command::new("true")
        .status()
        .expect("run true");
    assert!(status.success());
    started.elapsed()
}

async fn exec_true(client: &mut ExecServiceClient<tonic::transport::Channel>, id: &str) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::ExecRequest {
        request: Some(pb::exec_request::Request::Start(pb::ExecStart {
            sandbox_id: id.to_owned(),
            spec: Some(pb::CommandSpec {
                command: vec!["true".into()],
                ..Default::default()
            }),
            on_disconnect: 0,
        })),
    })
    .await
    .unwrap();
    let mut responses = client
        .exec(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    while let Some(message) = responses.message().await.unwrap() {
        if let Some(pb::exec_response::Response::Exited(exited)) = message.response {
            assert_eq!(exited.exit_code, Some(0));
        }
    }
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 500 } else { 20 };
    let data = tempfile::tempdir().unwrap();
    let config = ServerConfig::resolve(ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(data.path().to_path_buf()),
        agent_binary: Some(env!("CARGO_BIN_EXE_paddock").into()),
        log: Some("warn".into()),
        ..ServeArgs::default()
    })
    .unwrap();
    let server = Server::start(config).await.unwrap();
    let BoundAddr::Tcp(addr) = server.local_addr().clone() else {
        unreachable!("TCP")
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut sandboxes = SandboxServiceClient::new(channel.clone());
    let sandbox = sandboxes
        .create_sandbox(pb::CreateSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    let mut exec = ExecServiceClient::new(channel);
    let socket = data
        .path()
        .join("sandboxes")
        .join(&sandbox.id)
        .join("agent.sock");
    let mut direct = ExecServiceClient::new(
        tonic::transport::Endpoint::from_static("http://agent.invalid")
            .connect_with_connector(tower::service_fn(move |_| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .unwrap(),
    );
    let run_true = pb::RunCommandRequest {
        sandbox_id: sandbox.id.clone(),
        command: vec!["true".into()],
        ..Default::default()
    };
    // Warm up the connection, the agent and the page cache.
    for _ in 0..5 {
        exec.run_command(run_true.clone()).await.unwrap();
        fork_exec_true();
    }

    let (mut run, mut bidi, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    let mut inside = Vec::new();
    let mut agent_only = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let ran = exec
            .run_command(run_true.clone())
            .await
            .unwrap()
            .into_inner();
        run.push(started.elapsed());
        let d = ran.duration.unwrap_or_default();
        inside.push(Duration::new(d.seconds as u64, d.nanos as u32));
        let started = Instant::now();
        direct.run_command(run_true.clone()).await.unwrap();
        agent_only.push(started.elapsed());
        let started = Instant::now();
        exec_true(&mut exec, &sandbox.id).await;
        bidi.push(started.elapsed());
        floor.push(fork_exec_true());
    }
    println!(
        "exec round trip of `true` on the process provider, {rounds} rounds{}",
        if full {
            ""
        } else {
            " (smoke run; `cargo bench --bench exec` for figures)"
        }
    );
    let floor = stats(floor);
    report("RunCommand vs fork/exec", stats(run), Stats { ..floor });
    report(
        "Exec (bidirectional) vs fork/exec",
        stats(bidi),
        Stats { ..floor },
    );
    report(
        "  RunCommand straight to the agent",
        stats(agent_only),
        Stats { ..floor },
    );
    report(
        "  of which start to exit in the agent",
        stats(inside),
        floor,
    );

    sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id,
        })
        .await
        .unwrap();
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
