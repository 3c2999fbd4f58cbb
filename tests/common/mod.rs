//! The in-process test harness: the real server on an ephemeral port or a
//! Unix socket, and generated clients connected to it.

#![allow(dead_code)] // Each test crate uses a different part of the harness.

use std::path::{Path, PathBuf};
use std::time::Duration;

use paddock::config::{ServeArgs, ServerConfig};
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use paddock::server::{BoundAddr, Server};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;

pub mod api_keys;
pub mod calls;
pub mod docker;
pub mod kube;
pub mod postgres;
pub mod spawned;
pub mod warm;

/// A provider a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Local processes.
    Process,
    /// Containers on the test Docker engine, from the busybox test image,
    /// their agents reached straight through their sockets.
    Docker,
    /// The same, with agents reached through the exec bridge, as on a
    /// remote engine.
    DockerBridge,
    /// Pods through the test API server (a test double that backs them
    /// with containers on the test engine), agents reached through the
    /// exec subresource.
    Kubernetes,
}

impl Provider {
    /// The provider's name in the API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Docker | Self::DockerBridge => "docker",
            Self::Kubernetes => "kubernetes",
        }
    }

    /// Whether sandboxes are Docker containers made by the docker provider.
    pub fn is_docker(self) -> bool {
        matches!(self, Self::Docker | Self::DockerBridge)
    }

    /// Makes this provider the server's default, reached this way.
    pub fn configure(self, args: &mut ServeArgs) {
        args.provider = Some(self.name().into());
        if self == Self::DockerBridge {
            args.docker_agent_transport = Some("bridge".into());
        }
        if self == Self::Kubernetes {
            kube::configure(args);
        }
    }
}

/// Generates, for each `async fn NAME(provider: Provider)` listed, a test
/// `process_provider::NAME`, `docker_provider::NAME` and
/// `docker_provider_through_the_bridge::NAME`, so that one suite of behaviour
/// runs against both providers and both ways of reaching Docker agents. Docker tests skip
/// outside CI when no engine is set up (and fail under CI=true).
#[macro_export]
macro_rules! on_every_provider {
    ($($name:ident),* $(,)?) => {
        mod process_provider {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::common::Provider::Process).await
                }
            )*
        }
        mod docker_provider {
            $(
                #[tokio::test]
                async fn $name() {
                    if super::common::docker::available() {
                        super::$name(super::common::Provider::Docker).await
                    }
                }
            )*
        }
        mod docker_provider_through_the_bridge {
            $(
                #[tokio::test]
                async fn $name() {
                    if super::common::docker::available() {
                        super::$name(super::common::Provider::DockerBridge).await
                    }
                }
            )*
        }
        mod kubernetes_provider {
            $(
                #[tokio::test]
                async fn $name() {
                    if super::common::kube::available() {
                        super::$name(super::common::Provider::Kubernetes).await
                    }
                }
            )*
        }
    };
}

/// The state store a test server keeps its records in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The SQLite file in its data directory.
    Sqlite,
    /// A fresh database on the test Postgres server.
    Postgres,
}

/// Generates, for each `async fn NAME(store: Store)` listed, a test
/// `sqlite::NAME` and `postgres::NAME`, so that one suite of behaviour runs
/// on both databases. Postgres tests skip outside CI when no server is set
/// up (and fail under CI=true).
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::common::Store::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::common::Store::Postgres).await
                }
            )*
        }
    };
}

/// A running server and the temporary data directory it owns.
pub struct TestServer {
    pub addr: BoundAddr,
    pub data_dir: PathBuf,
    /// The Postgres database it keeps its state in; `None` for the SQLite
    /// file in its data directory.
    pub database_url: Option<String>,
    /// The store's identity: the `io.paddock.scope` label of its containers.
    pub scope: String,
    /// Where it serves metrics, when `metrics_listen` asked for them.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where its preview proxy listens, when `preview_listen` asked for one.
    pub preview_addr: Option<std::net::SocketAddr>,
    _temp: Option<TempDir>,
    /// The settings it was started with, for a restart.
    args: ServeArgs,
    /// Set when a new server takes over the data directory: dropping this
    /// one then leaves the agents and containers to it.
    handed_over: bool,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// A server on 127.0.0.1 with an ephemeral port and a fresh SQLite file.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server keeping its state in `store`, with settings changed by
    /// `configure`; `None` when that store is Postgres and none is set up
    /// outside CI.
    pub async fn on(store: Store, configure: impl FnOnce(&mut ServeArgs)) -> Option<Self> {
        let database_url = match store {
            Store::Sqlite => None,
            Store::Postgres => Some(postgres::fresh_database().await?),
        };
        Some(
            Self::start_with(|args| {
                args.database_url = database_url;
                configure(args);
            })
            .await,
        )
    }

    /// A server whose default provider is `provider`.
    pub async fn for_provider(provider: Provider) -> Self {
        Self::start_with(|args| provider.configure(args)).await
    }

    /// A server whose default provider is `provider`, with settings changed
    /// by `configure`.
    pub async fn for_provider_with(
        provider: Provider,
        configure: impl FnOnce(&mut ServeArgs),
    ) -> Self {
        Self::start_with(|args| {
            provider.configure(args);
            configure(args);
        })
        .await
    }

    /// Like [`TestServer::start`], with settings changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut ServeArgs)) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().to_path_buf();
        let mut server = Self::start_in(&data_dir, configure).await;
        server._temp = Some(temp);
        server
    }

    /// A server keeping its state in `data_dir`, which the caller owns.
    pub async fn start_in(data_dir: &Path, configure: impl FnOnce(&mut ServeArgs)) -> Self {
        let mut args = ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.to_path_buf()),
            reap_interval: Some("100ms".into()),
            shutdown_grace: Some("5s".into()),
            agent_binary: Some(env!("CARGO_BIN_EXE_paddock").into()),
            provider: Some("process".into()),
            docker_agent_binary: std::env::var_os(docker::AGENT_VARIABLE).map(Into::into),
            docker_default_image: Some(docker::BUSYBOX.into()),
            docker_runtime: docker::runtime(),
            ..ServeArgs::default()
        };
        configure(&mut args);
        Self::start_with_args(args).await
    }

    /// A server started with exactly `args`.
    async fn start_with_args(args: ServeArgs) -> Self {
        let data_dir = args.data_dir.clone().expect("a data directory");
        let database_url = args.database_url.clone();
        let config = ServerConfig::resolve(args.clone()).expect("valid test config");
        let server = Server::start(config).await.expect("server starts");
        let addr = server.local_addr().clone();
        let scope = server.store_id().to_owned();
        let metrics_addr = server.metrics_addr();
        let preview_addr = server.preview_addr();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stop.await;
        }));
        Self {
            addr,
            data_dir,
            database_url,
            scope,
            metrics_addr,
            preview_addr,
            _temp: None,
            args,
            handed_over: false,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Channel {
        connect(&self.addr).await
    }

    /// A SandboxService client.
    pub async fn sandboxes(&self) -> SandboxServiceClient<Channel> {
        SandboxServiceClient::new(self.channel().await)
    }

    /// A gRPC health client.
    pub async fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel().await)
    }

    /// The Docker container backing the pod of Kubernetes sandbox `id` on
    /// this server's test API server.
    pub fn pod_container(&self, id: &str) -> String {
        kube::with_double(&self.kubeconfig(), |api| api.container_of(id))
    }

    /// The kubeconfig of this server's test API server.
    pub fn kubeconfig(&self) -> PathBuf {
        self.args
            .kube
            .kube_config
            .clone()
            .expect("a kubernetes server")
    }

    /// Whether the objects of Kubernetes sandbox `id` exist on this
    /// server's test API server.
    pub fn pod_objects_exist(&self, id: &str) -> bool {
        kube::with_double(&self.kubeconfig(), |api| api.sandbox_exists(id))
    }

    /// Whether this server's test API server holds the claim of the volume
    /// whose provider object is `object`.
    pub fn volume_claim_exists(&self, object: &str) -> bool {
        kube::with_double(&self.kubeconfig(), |api| api.volume_claim_exists(object))
    }

    /// The process provider's directory of sandbox `id`.
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("sandboxes").join(id)
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    /// Stops the server gracefully and starts a new one with the same
    /// settings on the same state, as an operator's restart does: the
    /// sandboxes' agents (processes or containers) run on throughout. The new
    /// server owns what this one owned.
    pub async fn restart(mut self) -> Self {
        self.stop_in_place().await;
        self.handed_over = true;
        let temp = self._temp.take();
        let mut next = Self::start_with_args(self.args.clone()).await;
        next._temp = temp;
        next
    }

    async fn stop_in_place(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops within 10s")
                .expect("server task")
                .expect("server stops cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if self.handed_over {
            return;
        }
        if let Some(kubeconfig) = &self.args.kube.kube_config {
            kube::release(kubeconfig);
        }
        kill_agents(&self.data_dir);
        // A server on a caller's directory may be followed by another on it:
        // that caller removes the containers (docker::RemoveContainers).
        if self._temp.is_some() {
            docker::remove_containers(&self.scope);
        }
    }
}

/// The program the environment variable `variable` names (scripts/test
/// sets it: an interpreter, a built client, a tool it installed); `None`,
/// so that the test skips, when it is unset outside CI. Under CI=true an
/// unset variable fails the test: CI never skips.
pub fn program_from(variable: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(path.into());
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !in_ci,
        "{variable} is not set; CI=true forbids skipping. scripts/test sets it"
    );
    eprintln!("SKIPPED: {variable} is not set (scripts/test sets it)");
    None
}

/// Kills the agents of every process sandbox under `data_dir`: agents
/// outlive their server by design, but not a test.
pub fn kill_agents(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("sandboxes")) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(launcher) = recorded_agent_pid(&entry.path()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{launcher}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("\0agent\0") {
            for pid in children(launcher).into_iter().chain([launcher]) {
                // SAFETY: kill takes plain integers.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

fn recorded_agent_pid(sandbox_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(sandbox_dir.join("agent.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The pid of the agent of the process sandbox in `sandbox_dir`: the recorded
/// process, or its child when bubblewrap launched it.
pub fn agent_pid(sandbox_dir: &Path) -> u32 {
    let launcher = recorded_agent_pid(sandbox_dir).expect("an agent pid file");
    children(launcher).into_iter().next().unwrap_or(launcher)
}

/// A channel to a server at `addr`, over TCP or a Unix socket.
pub async fn connect(addr: &BoundAddr) -> Channel {
    match addr {
        BoundAddr::Tcp(addr) => Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect over TCP"),
        BoundAddr::Unix(path) => {
            let path = path.clone();
            // The URI is required by the API but unused by the connector.
            Endpoint::from_static("http://paddock.invalid")
                .connect_with_connector(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await
                .expect("connect over the Unix socket")
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after
/// `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every sandbox of the default tenant, in every state (one page).
pub async fn every_sandbox(
    client: &mut SandboxServiceClient<Channel>,
) -> Vec<paddock::pb::Sandbox> {
    client
        .list_sandboxes(paddock::pb::ListSandboxesRequest {
            states: (1..=8).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandboxes
}
