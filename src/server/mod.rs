//! Wiring: the store, the providers and the manager chosen at start-up, the
//! gRPC services (with health and reflection), the listener, and graceful
//! shutdown. The top of the crate: it may use every layer, and none uses
//! it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::api::auth::{AuthLayer, AuthMode};
use crate::api::preview::{PreviewProxy, PreviewSite};
use crate::api::{ExecApi, FileApi, PortApi, SandboxApi, TemplateApi, VolumeApi};
use crate::config::{CorsOrigins, GrpcWeb, ProviderChoice, ServerConfig};
use crate::pb;
use crate::pb::exec_service_server::ExecServiceServer;
use crate::pb::file_service_server::FileServiceServer;
use crate::pb::port_service_server::PortServiceServer;
use crate::pb::sandbox_service_server::SandboxServiceServer;
use crate::pb::template_service_server::TemplateServiceServer;
use crate::pb::volume_service_server::VolumeServiceServer;
use crate::provider::{
    AgentLaunch, DockerProvider, DockerSettings, KubernetesProvider, KubernetesSettings,
    ProcessProvider, Provider, Providers,
};
use crate::sandbox::{Manager, keep_lease, spawn_reaper, spawn_warm_pools};
use crate::store::{DatabaseHealth, ObservedStore, SqlStore, Store};
use crate::telemetry::{self, Metrics, ObserveLayer};
use crate::tls::ReloadingTls;
use crate::wire::authority::MendAuthority;
use crate::wire::{RECEIVE_CONNECTION_WINDOW, RECEIVE_MAX_FRAME, RECEIVE_STREAM_WINDOW};
use bootstrap::ensure_bootstrap_key;
use health::{set_serving, watch_database};
pub use listen::BoundAddr;
use listen::{Listener, bind, bind_metrics, refusal};
use metrics::{known_methods, render_metrics};

mod bootstrap;
mod health;
mod listen;
mod metrics;
mod preview;

/// A server that has opened its state, reconciled it, and bound its
/// listener, ready to serve.
pub struct Server {
    config: ServerConfig,
    manager: Manager,
    store: Arc<dyn Store>,
    listener: Listener,
    tls: Option<ReloadingTls>,
    addr: BoundAddr,
    store_id: String,
    metrics: Arc<Metrics>,
    /// The database itself, unobserved, for the health checks.
    database: Arc<dyn Store>,
    /// What the health checks found, which the observed store fails fast on.
    database_health: Arc<DatabaseHealth>,
    /// The metrics listener, when `--metrics-listen` asks for one.
    metrics_listener: Option<TcpListener>,
    /// The preview proxy's listener, when `--preview-listen` asks for one.
    preview_listener: Option<TcpListener>,
    /// Where previews are reached and how their tokens are signed.
    preview: PreviewSite,
}

impl Server {
    /// Opens the store, the providers and the manager, repairs what an
    /// earlier crash left behind, and binds the listener.
    pub async fn start(config: ServerConfig) -> anyhow::Result<Self> {
        if config.auth == AuthMode::None && !config.listen.is_local() {
            bail!(refusal(&config.listen.to_string()));
        }
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let metrics = Arc::new(Metrics::new());
        let database: Arc<dyn Store> = Arc::new(
            SqlStore::connect(&config.effective_database_url())
                .await
                .context("cannot open the state store")?,
        );
        let database_health = Arc::new(DatabaseHealth::default());
        let store: Arc<dyn Store> = Arc::new(ObservedStore::new(
            database.clone(),
            metrics.clone(),
            database_health.clone(),
        ));
        if let Some((key, tenant)) = &config.bootstrap_key {
            ensure_bootstrap_key(store.as_ref(), key, tenant)
                .await
                .context("cannot add the bootstrap API key")?;
        }
        let store_id = store
            .store_id()
            .await
            .context("cannot read the store's identity")?;
        let providers = build_providers(&config, &store_id).await?;
        info!(
            default_provider = providers.default_name(),
            "providers ready"
        );
        let manager = Manager::new(
            store.clone(),
            providers,
            config.lifecycle.clone(),
            metrics.clone(),
        )
        .await?;
        manager
            .reconcile()
            .await
            .context("start-up reconciliation failed")?;
        // Read before binding, so a bad certificate stops the start-up with
        // its file named instead of a server that fails every handshake.
        let tls = config
            .tls
            .clone()
            .map(|files| ReloadingTls::load(files, config.tls_reload_interval))
            .transpose()?;
        let (listener, addr) = bind(&config.listen).await?;
        let metrics_listener = match &config.metrics_listen {
            Some(host_port) => Some(bind_metrics(host_port).await?),
            None => None,
        };
        let (preview_listener, preview) = preview::open(&config.preview, &store).await?;
        if let BoundAddr::Tcp(bound) = &addr
            && config.auth == AuthMode::None
            && !bound.ip().is_loopback()
        {
            bail!(refusal(&bound.to_string()));
        }
        Ok(Self {
            config,
            manager,
            store,
            listener,
            tls,
            addr,
            store_id,
            metrics,
            database,
            database_health,
            metrics_listener,
            preview_listener,
            preview,
        })
    }

    /// Where the metrics are served, when they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Where the preview proxy listens, when it does.
    pub fn preview_addr(&self) -> Option<SocketAddr> {
        self.preview_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The store's identity, which labels this server's provider objects.
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// Where the server listens.
    pub fn local_addr(&self) -> &BoundAddr {
        &self.addr
    }

    /// The lifecycle manager, for in-process callers.
    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// Serves until `shutdown` completes, then stops taking calls, ends watch
    /// streams, and waits up to the configured grace for open calls.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Self {
            config,
            manager,
            store,
            listener,
            tls,
            addr,
            store_id: _,
            metrics,
            database,
            database_health,
            metrics_listener,
            preview_listener,
            preview,
        } = self;
        let (stopping_tx, stopping_rx) = watch::channel(false);
        let (health, health_service) = tonic_health::server::health_reporter();
        set_serving(&health, true).await;
        let database_check = watch_database(database, database_health, health.clone());

        // Both reflection versions describe every service, each other
        // included: grpcurl 1.8 asks v1alpha, newer clients ask v1.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
                .include_reflection_service(false)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let lease = keep_lease(manager.clone(), lease_holder(), config.reaper_lease_ttl);
        let reaper = spawn_reaper(manager.clone(), config.reap_interval, lease.lease.clone());
        let warm_pools = spawn_warm_pools(manager.clone(), lease.lease.clone());
        let observers = manager.spawn_observers(lease.lease.clone());
        let exposition = metrics_listener.map(|listener| {
            if let Ok(metrics_addr) = listener.local_addr() {
                info!(%metrics_addr, "serving metrics at /metrics");
            }
            let mut stopping = stopping_rx.clone();
            tokio::spawn(telemetry::exposition::serve(
                listener,
                render_metrics(manager.clone(), lease.lease.clone()),
                async move {
                    let _ = stopping.wait_for(|stopping| *stopping).await;
                },
            ))
        });
        let auth = AuthLayer::new(
            store.clone(),
            config.auth,
            config.open_reflection,
            config.key_rate_limit,
        );
        let previews = preview_listener.map(|listener| {
            if let Ok(preview_addr) = listener.local_addr() {
                info!(%preview_addr, "serving sandbox previews");
            }
            let mut stopping = stopping_rx.clone();
            let proxy = PreviewProxy::new(preview.clone(), manager.clone(), auth.clone());
            tokio::spawn(crate::api::preview::serve(
                listener,
                Arc::new(proxy),
                async move {
                    let _ = stopping.wait_for(|stopping| *stopping).await;
                },
            ))
        });
        let router = tonic::transport::Server::builder()
            // Receive windows big enough that an upload's 1 MiB chunks keep
            // flowing instead of waiting for a window update each.
            .initial_stream_window_size(RECEIVE_STREAM_WINDOW)
            .initial_connection_window_size(RECEIVE_CONNECTION_WINDOW)
            .max_frame_size(Some(RECEIVE_MAX_FRAME))
            // gRPC-Web comes over HTTP/1.1 from browsers; CORS answers their
            // preflights before the key is asked for, as browsers send none.
            .accept_http1(config.grpc_web.is_some())
            .layer(tower::util::option_layer(
                config.grpc_web.as_ref().and_then(cors),
            ))
            .layer(match config.grpc_web {
                Some(_) => tower::util::Either::Left(tonic_web::GrpcWebLayer::new()),
                // The same body type either way, as the router needs.
                None => tower::util::Either::Right(
                    tower_http::map_response_body::MapResponseBodyLayer::new(
                        tonic::body::Body::new,
                    ),
                ),
            })
            .layer(ObserveLayer::new(metrics, known_methods()?))
            .layer(auth)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(ExecServiceServer::new(ExecApi::new(
                manager.clone(),
                stopping_rx.clone(),
            )))
            .add_service(
                FileServiceServer::new(FileApi::new(manager.clone()))
                    .max_decoding_message_size(4 << 20),
            )
            .add_service(
                PortServiceServer::new(PortApi::new(
                    manager.clone(),
                    stopping_rx.clone(),
                    preview.clone(),
                ))
                .max_decoding_message_size(4 << 20),
            )
            .add_service(VolumeServiceServer::new(VolumeApi::new(manager.clone())))
            .add_service(
                TemplateServiceServer::new(TemplateApi::new(manager.clone()))
                    .max_decoding_message_size(4 << 20),
            )
            .add_service(SandboxServiceServer::new(SandboxApi::new(
                manager,
                stopping_rx,
                preview.urls,
            )));

        let shutdown_begun = Arc::new(Notify::new());
        let signal = {
            let shutdown_begun = shutdown_begun.clone();
            async move {
                shutdown.await;
                info!("shutting down: no new calls; ending watch and Exec streams");
                // Not SERVING from now on, whatever the database says.
                database_check.abort();
                let _ = stopping_tx.send(true);
                set_serving(&health, false).await;
                shutdown_begun.notify_one();
            }
        };
        let grace = config.shutdown_grace;
        let grace_over = async move {
            shutdown_begun.notified().await;
            tokio::time::sleep(grace).await;
        };

        info!(%addr, tls = tls.is_some(), "serving");
        let served = match listener {
            Listener::Tcp(listener) if let Some(tls) = tls => {
                let incoming = crate::tls::incoming(listener, tls);
                tokio::select! {
                    served = router.serve_with_incoming_shutdown(incoming, signal) => served,
                    () = grace_over => {
                        warn!(?grace, "shutdown grace ran out; closing open calls");
                        Ok(())
                    }
                }
            }
            Listener::Tcp(listener) => {
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                tokio::select! {
                    served = router.serve_with_incoming_shutdown(incoming, signal) => served,
                    () = grace_over => {
                        warn!(?grace, "shutdown grace ran out; closing open calls");
                        Ok(())
                    }
                }
            }
            Listener::Unix(listener, ref path) => {
                // Stock gRPC clients name a socket connection by its path,
                // which h2 refuses as an :authority (see MendAuthority).
                let incoming = UnixListenerStream::new(listener)
                    .map(|accepted| accepted.map(MendAuthority::new));
                let served = tokio::select! {
                    served = router.serve_with_incoming_shutdown(incoming, signal) => served,
                    () = grace_over => {
                        warn!(?grace, "shutdown grace ran out; closing open calls");
                        Ok(())
                    }
                };
                if let Err(e) = std::fs::remove_file(path) {
                    warn!(path = %path.display(), error = %e, "cannot remove the socket file");
                }
                served
            }
        };
        reaper.abort();
        warm_pools.abort();
        lease.release().await;
        if let Some(exposition) = exposition {
            exposition.abort();
        }
        if let Some(previews) = previews {
            previews.abort();
        }
        for observer in observers {
            observer.abort();
        }
        served.context("the gRPC server failed")?;
        info!("stopped");
        Ok(())
    }
}

/// The CORS answers that let pages of the allowed origins call over
/// gRPC-Web; `None` when no origin is allowed.
fn cors(grpc_web: &GrpcWeb) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins = match &grpc_web.origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) if list.is_empty() => return None,
        CorsOrigins::List(list) => AllowOrigin::list(
            list.iter()
                .filter_map(|origin| http::HeaderValue::from_str(origin).ok()),
        ),
    };
    let header = http::HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([http::Method::POST])
            .allow_headers([
                header("authorization"),
                header("content-type"),
                header("x-grpc-web"),
                header("x-user-agent"),
                header("grpc-timeout"),
            ])
            .expose_headers([
                header("grpc-status"),
                header("grpc-message"),
                header("grpc-status-details-bin"),
            ])
            .max_age(std::time::Duration::from_secs(24 * 60 * 60)),
    )
}

/// This server process's name as a lease holder: its host, process id and a
/// random part (a restarted process may reuse the id).
fn lease_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    let random = crate::ids::new_sandbox_id();
    let tail = &random[random.len() - 8..];
    format!("{host}/{}/{tail}", std::process::id())
}

/// Every provider, and the default: with "auto", docker when its engine
/// answers and the agent binary can run in containers, else process. Docker
/// is listed even when its engine is away, so that ListProviders says why.
async fn build_providers(config: &ServerConfig, store_id: &str) -> anyhow::Result<Providers> {
    let process =
        ProcessProvider::open(config.data_dir.join("sandboxes"), config.agent.clone()).await?;
    let docker = DockerProvider::open(DockerSettings {
        host: config.docker.host.clone(),
        tls_dir: config.docker.tls_dir.clone(),
        default_image: config.docker.default_image.clone(),
        pull_timeout: config.docker.pull_timeout,
        agent: AgentLaunch {
            binary: config.docker.agent_binary.clone(),
            ..config.agent.clone()
        },
        scope: store_id.to_owned(),
        transport: config.docker.transport,
        egress_blocked: config.docker.egress_blocked.clone(),
        allow_list_dns: config.docker.allow_list_dns.clone(),
        runtime: config.docker.runtime.clone(),
        runtimes: config.docker.runtimes.clone(),
    })
    .await?;
    let docker_info = docker.info().await;
    let mut all: Vec<Arc<dyn Provider>> = vec![Arc::new(process), docker];
    if let Some(kube) = &config.kubernetes {
        all.push(
            KubernetesProvider::open(KubernetesSettings {
                kubeconfig: kube.kubeconfig.clone(),
                context: kube.context.clone(),
                namespace: kube.namespace.clone(),
                agent_image: kube.agent_image.clone(),
                default_image: kube.default_image.clone(),
                agent: config.agent.clone(),
                scope: store_id.to_owned(),
                workspace_size: kube.workspace_size.clone(),
                volume_size: kube.volume_size.clone(),
                storage_class: kube.storage_class.clone(),
                runtime_class: kube.runtime_class.clone(),
                runtime_classes: kube.runtime_classes.clone(),
                node_selector: kube.node_selector.clone(),
                tolerations: kube.tolerations.clone(),
                egress_blocked: config.docker.egress_blocked.clone(),
            })
            .await?,
        );
    }
    let default = match config.provider {
        ProviderChoice::Process => ProcessProvider::NAME,
        ProviderChoice::Docker => DockerProvider::NAME,
        ProviderChoice::Kubernetes => KubernetesProvider::NAME,
        ProviderChoice::Auto if docker_info.available => DockerProvider::NAME,
        ProviderChoice::Auto => {
            info!(reason = %docker_info.detail, "provider auto: using process, not docker");
            ProcessProvider::NAME
        }
    };
    if default == DockerProvider::NAME && !docker_info.available {
        warn!(reason = %docker_info.detail, "the default provider docker is not available yet");
    }
    Ok(Providers::new(all, default)?)
}
