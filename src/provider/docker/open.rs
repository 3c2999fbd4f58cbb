//! Opening the provider: the engine's address and TLS, and the tasks that
//! follow the engine and keep the network rules.

use std::sync::{Arc, RwLock};

use bollard::Docker;
use tokio::sync::broadcast;

use super::agent_volume::AgentBuild;
use super::{DockerProvider, DockerSettings, EngineStatus, allow_list, egress};
use crate::error::{Error, Result};

impl DockerProvider {
    /// A provider for the engine `settings` name. Fails only on settings that
    /// cannot work (a bad address, missing TLS files); an engine that does not
    /// answer yet leaves the provider unavailable until it does.
    pub async fn open(settings: DockerSettings) -> Result<Arc<Self>> {
        let address = settings
            .host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let connected = match &settings.tls_dir {
            Some(dir) => Docker::connect_with_ssl(
                &address,
                &dir.join("key.pem"),
                &dir.join("cert.pem"),
                &dir.join("ca.pem"),
                120,
                bollard::API_DEFAULT_VERSION,
            ),
            None => Docker::connect_with_host(&address),
        };
        let (docker, missing_socket) = match connected {
            Ok(docker) => (docker, None),
            // No engine on this machine (a server in a container, say): the
            // provider stays listed, unavailable, saying why.
            Err(bollard::errors::Error::SocketNotFoundError(socket)) => {
                let placeholder =
                    Docker::connect_with_unix("/dev/null", 1, bollard::API_DEFAULT_VERSION)
                        .map_err(|e| Error::internal("opening the docker provider", e))?;
                (placeholder, Some(socket))
            }
            Err(e) => {
                return Err(Error::invalid_argument(
                    "docker_host",
                    format!("cannot use the Docker engine address {address:?}: {e}"),
                ));
            }
        };
        let agent = AgentBuild::inspect(&settings.agent.binary);
        let (observations, _) = broadcast::channel(1024);
        let egress = egress::Egress::new(settings.egress_blocked.clone());
        let allow_list = allow_list::AllowList::new(
            settings.egress_blocked.clone(),
            settings.allow_list_dns.clone(),
        );
        let provider = Arc::new(Self {
            docker,
            missing_socket,
            settings,
            address,
            agent,
            agent_installed: tokio::sync::Mutex::new(false),
            engine: RwLock::new(EngineStatus {
                available: false,
                detail: "not checked yet".to_owned(),
                cpus: None,
                runtimes: Vec::new(),
            }),
            egress,
            allow_list,
            observations,
        });
        provider.check_engine().await;
        tokio::spawn(Self::watch_engine(Arc::downgrade(&provider)));
        tokio::spawn(Self::keep_network_rules(Arc::downgrade(&provider)));
        Ok(provider)
    }
}
