//! Exec round trips through Paddock next to the floor beneath them, in one
//! run, alternating the two.
//!
//! `cargo bench --bench exec` runs it in full; any other invocation (such as
//! `cargo test --bench exec`, which CI runs) is a short smoke run that only
//! checks that it works. It prints min, median and p95 per operation and the
//! ratio Paddock/floor. The floor of the process provider is a plain
//! fork/exec of the same program from the same process; the floor of the
//! docker provider is the Docker Engine API driven directly (bollard's exec:
//! create, start attached, read to the end, inspect for the exit code) in
//! the same container, so on the same engine and image. After each raw exec
//! the run pauses briefly (see `settle`) so that the engine's cleanup of it
//! is not charged to the next Paddock sample.
//!
//! The docker section needs an engine, the static agent (`PADDOCK_STATIC_AGENT`,
//! built by scripts/build-static-agent) and the image paddock-test/busybox
//! (scripts/test-images); without them it says so and is skipped, except
//! under CI=true, where that is an error.

use std::time::{Duration, Instant};

use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use tokio_stream::wrappers::ReceiverStream;

mod support;

use support::{BENCH_IMAGE, BenchServer, Stats, report, stats};

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
    process_section(full).await;
    docker_section(full).await;
}

async fn process_section(full: bool) {
    let rounds = if full { 500 } else { 20 };
    let server = BenchServer::start("process").await;
    let channel = server.channel.clone();
    let data = &server.data;
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
    server.stop().await;
}

/// Waits for the engine to finish tidying up after raw execs. A raw exec
/// answers before dockerd, containerd and runc are done with it, and on a
/// small machine that leftover work would land in the next Paddock sample
/// (measured here: 2.4 ms alone, 4 to 6 ms right after a raw exec).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// `true` through the Docker Engine API as `docker exec` does it: create,
/// start attached, read to the end, inspect for the exit code.
async fn raw_docker_exec_true(docker: &bollard::Docker, container: &str) -> Duration {
    use bollard::exec::{CreateExecOptions, StartExecResults};
    use futures::StreamExt;
    let started = Instant::now();
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(vec!["true"]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    if let StartExecResults::Attached { mut output, .. } =
        docker.start_exec(&exec.id, None).await.unwrap()
    {
        while output.next().await.is_some() {}
    }
    let inspected = docker.inspect_exec(&exec.id).await.unwrap();
    assert_eq!(inspected.exit_code, Some(0));
    started.elapsed()
}

async fn docker_section(full: bool) {
    let (rounds, batches, concurrency) = if full { (200, 10, 50) } else { (5, 1, 50) };
    let Some(docker) = support::docker_or_skip("docker exec").await else {
        return;
    };
    println!(
        "exec on the docker provider ({BENCH_IMAGE}), floor: raw Docker Engine API exec in the same container, {rounds} rounds, {batches} batches of {concurrency}{}",
        if full {
            ""
        } else {
            " (smoke run; `cargo bench --bench exec` for figures)"
        }
    );
    for (transport, label) in [("auto", "agent socket"), ("bridge", "exec bridge")] {
        let server = BenchServer::start_with("docker", transport).await;
        let mut sandboxes = SandboxServiceClient::new(server.channel.clone());
        let sandbox = sandboxes
            .create_sandbox(pb::CreateSandboxRequest {
                image: BENCH_IMAGE.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .sandbox
            .unwrap();
        let container = format!("paddock-{}", sandbox.id);
        let exec = ExecServiceClient::new(server.channel.clone());
        let run_true = pb::RunCommandRequest {
            sandbox_id: sandbox.id.clone(),
            command: vec!["true".into()],
            ..Default::default()
        };
        for _ in 0..3 {
            exec.clone().run_command(run_true.clone()).await.unwrap();
            raw_docker_exec_true(&docker, &container).await;
        }
        let (mut run, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let started = Instant::now();
            exec.clone().run_command(run_true.clone()).await.unwrap();
            run.push(started.elapsed());
            raw.push(raw_docker_exec_true(&docker, &container).await);
            settle().await;
        }
        let (mut batch, mut raw_batch) = (Vec::new(), Vec::new());
        for _ in 0..batches {
            let started = Instant::now();
            let calls = (0..concurrency).map(|_| {
                let mut exec = exec.clone();
                let request = run_true.clone();
                async move { exec.run_command(request).await.unwrap() }
            });
            futures::future::join_all(calls).await;
            batch.push(started.elapsed());
            let started = Instant::now();
            let calls = (0..concurrency).map(|_| raw_docker_exec_true(&docker, &container));
            futures::future::join_all(calls).await;
            raw_batch.push(started.elapsed());
            settle().await;
        }
        report(
            &format!("RunCommand ({label}) vs raw exec"),
            stats(run),
            stats(raw),
        );
        report(
            &format!("{concurrency} concurrent ({label}), batch"),
            stats(batch),
            stats(raw_batch),
        );
        sandboxes
            .delete_sandbox(pb::DeleteSandboxRequest {
                sandbox_id: sandbox.id,
            })
            .await
            .unwrap();
        server.stop().await;
    }
}
