//! What the benchmarks share: a server in the process, the Docker
//! preconditions, and min/median/p95 reports with the ratio Paddock/floor.

#![allow(dead_code)] // Each benchmark uses a different part.

use std::time::Duration;

use paddock::config::{ServeArgs, ServerConfig};
use paddock::server::{BoundAddr, Server};

pub const STATIC_AGENT: &str = "PADDOCK_STATIC_AGENT";
pub const BENCH_IMAGE: &str = "paddock-test/busybox:latest";

pub struct Stats {
    pub min: Duration,
    pub median: Duration,
    pub p95: Duration,
}

pub fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Stats {
        min: samples[0],
        median: at(0.5),
        p95: at(0.95),
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

pub fn report(name: &str, paddock: Stats, floor: Stats) {
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

/// A server in this process on a fresh data directory, with `provider` as
/// its default; dropped with the returned guard.
pub struct BenchServer {
    pub channel: tonic::transport::Channel,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub data: tempfile::TempDir,
}

impl BenchServer {
    pub async fn start(provider: &str) -> Self {
        Self::start_with(provider, "auto").await
    }

    pub async fn start_with(provider: &str, docker_transport: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        let config = ServerConfig::resolve(ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data.path().to_path_buf()),
            agent_binary: Some(env!("CARGO_BIN_EXE_paddock").into()),
            docker_agent_binary: std::env::var_os(STATIC_AGENT).map(Into::into),
            provider: Some(provider.into()),
            docker_agent_transport: Some(docker_transport.into()),
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
        Self {
            channel,
            stop,
            serving,
            data,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.serving.await.unwrap().unwrap();
    }
}

/// Why the docker section cannot run here, if it cannot.
pub async fn docker_unavailable(docker: &bollard::Docker) -> Option<String> {
    if std::env::var_os(STATIC_AGENT).is_none() {
        return Some(format!(
            "{STATIC_AGENT} is not set (scripts/build-static-agent)"
        ));
    }
    if let Err(e) = docker.ping().await {
        return Some(format!("no Docker engine answers: {e}"));
    }
    if docker.inspect_image(BENCH_IMAGE).await.is_err() {
        return Some(format!(
            "the engine lacks {BENCH_IMAGE} (scripts/test-images)"
        ));
    }
    None
}

/// The engine, or why the Docker section cannot run (which is an error
/// under CI=true).
pub async fn docker_or_skip(section: &str) -> Option<bollard::Docker> {
    let docker = bollard::Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await;
    let why_not = match &docker {
        Ok(docker) => docker_unavailable(docker).await,
        Err(e) => Some(format!("cannot reach the Docker engine: {e}")),
    };
    if let Some(why) = why_not {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!in_ci, "the {section} benchmark cannot run: {why}");
        println!("{section}: skipped: {why}");
        return None;
    }
    docker.ok()
}
