//! The `process` provider: a sandbox is a private directory on the host.
//!
//! Layout under the provider's root:
//!
//! ```text
//! <root>/<sandbox_id>/sandbox.json   the marker: id, tenant, running or not
//! <root>/<sandbox_id>/rootfs/        the sandbox's filesystem, with its workdir
//! <root>/.creating-<sandbox_id>/     a create in progress (or cut short)
//! <root>/.deleting-<sandbox_id>/     a delete in progress (or cut short)
//! <root>/.volumes/<volume_id>/       a named volume's files
//! ```
//!
//! A directory becomes a sandbox only by an atomic rename of a complete
//! `.creating-` directory, and stops being one by an atomic rename to
//! `.deleting-`, so a crash at any point leaves either a whole sandbox or a
//! leftover that [`Provider::list`] clears.

use std::io::ErrorKind as IoErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::fs;
use tracing::{debug, instrument, warn};

use super::agent_process::{AgentFiles, AgentSandbox, Confinement, VolumeBind};
use super::contract::{
    AgentLaunch, Capabilities, Observed, Provider, ProviderInfo, ProvisionRequest, Usage,
};
use crate::agent_client::AgentChannel;
use crate::error::{Error, Result};
use crate::sandbox::{NetworkMode, SandboxSpec, Volume};

const MARKER: &str = "sandbox.json";
/// The sandbox's environment, for its agent; it holds secrets, so 0600.
const ENV_FILE: &str = "env.json";
const ROOTFS: &str = "rootfs";
const CREATING_PREFIX: &str = ".creating-";
const DELETING_PREFIX: &str = ".deleting-";
/// The directory of named volumes.
const VOLUMES: &str = ".volumes";

/// The marker file that makes a directory a sandbox.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    sandbox_id: String,
    tenant: String,
    /// The sandbox's working directory (a sandbox path), for its agent.
    workdir: String,
    /// Whether the sandbox is cut off the network.
    no_network: bool,
    /// The named volumes it mounts.
    #[serde(default)]
    volumes: Vec<VolumeBind>,
    running: bool,
}

/// Sandboxes as private directories under one root directory.
#[derive(Debug)]
pub struct ProcessProvider {
    root: PathBuf,
    agent: AgentLaunch,
    confinement: Confinement,
}

impl ProcessProvider {
    /// The provider's name.
    pub const NAME: &'static str = "process";

    /// A provider keeping its sandboxes under `root`, which is created (mode
    /// 0700) when missing, and running their agents as `agent` says.
    pub async fn open(root: impl Into<PathBuf>, agent: AgentLaunch) -> Result<Self> {
        let root = root.into();
        create_private_dir_all(&root).await.map_err(|e| {
            Error::unavailable(format!(
                "cannot create the process provider's directory {}: {e}",
                root.display()
            ))
        })?;
        let confinement = Confinement::detect().await;
        Ok(Self {
            root,
            agent,
            confinement,
        })
    }

    fn sandbox_dir(&self, sandbox_id: &str) -> Result<PathBuf> {
        // Ids come from the store, but a path is built from them: refuse
        // anything that could leave the root.
        if !crate::ids::is_sandbox_id(sandbox_id) {
            return Err(Error::internal(
                "locating a process sandbox",
                format!("malformed sandbox id {sandbox_id:?}"),
            ));
        }
        Ok(self.root.join(sandbox_id))
    }

    async fn read_marker(&self, dir: &Path) -> Result<Option<Marker>> {
        match fs::read(dir.join(MARKER)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::internal(
                    "reading a process sandbox marker",
                    format!("{}: {e}", dir.display()),
                )
            }),
            Err(e) if e.kind() == IoErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading a process sandbox marker", dir, e)),
        }
    }

    async fn set_running(&self, sandbox_id: &str, running: bool) -> Result<()> {
        let dir = self.sandbox_dir(sandbox_id)?;
        let Some(mut marker) = self.read_marker(&dir).await? else {
            return Err(Error::not_found(format!(
                "the process sandbox directory of {sandbox_id} is gone"
            )));
        };
        let agent = AgentFiles::new(&dir);
        if running {
            let sandbox = AgentSandbox {
                sandbox_id,
                workdir: &marker.workdir,
                no_network: marker.no_network,
                volumes: &marker.volumes,
            };
            agent
                .ensure_running(&self.agent, &self.confinement, sandbox)
                .await?;
        } else {
            agent.stop(sandbox_id).await?;
        }
        if marker.running != running {
            marker.running = running;
            write_marker(&dir, &marker).await?;
        }
        Ok(())
    }

    /// The directory of volume `volume_id`.
    fn volume_dir(&self, volume_id: &str) -> Result<PathBuf> {
        if !crate::ids::is_volume_id(volume_id) {
            return Err(Error::internal(
                "locating a process volume",
                format!("malformed volume id {volume_id:?}"),
            ));
        }
        Ok(self
            .root
            .join(VOLUMES)
            .join(Volume::object_name_of(volume_id)))
    }

    /// The binds of the volumes `spec` mounts. FAILED_PRECONDITION for a
    /// mount path the sandbox cannot hold: only the workdir's top-level
    /// directory, /tmp and top-level directories the host lacks are the
    /// sandbox's own; the rest is the host's, read-only.
    fn volume_binds(&self, spec: &SandboxSpec) -> Result<Vec<VolumeBind>> {
        let workdir_top = top_level(&spec.workdir);
        spec.volumes
            .iter()
            .map(|volume| {
                let top = top_level(&volume.mount_path);
                let own = top == workdir_top || top == "tmp" || !Path::new("/").join(top).exists();
                if !own {
                    return Err(Error::failed_precondition(format!(
                        "volumes: provider process cannot mount a volume at {:?}: /{top} is the \
                         host's, visible read-only; mount it under the workdir ({}), /tmp or a \
                         new top-level directory",
                        volume.mount_path, spec.workdir
                    )));
                }
                Ok(VolumeBind {
                    source: self.volume_dir(&volume.volume_id)?,
                    target: volume.mount_path.clone(),
                    read_only: volume.read_only,
                })
            })
            .collect()
    }

    async fn remove_leftover(&self, path: &Path) {
        if let Err(e) = fs::remove_dir_all(path).await
            && e.kind() != IoErrorKind::NotFound
        {
            warn!(path = %path.display(), error = %e, "cannot remove a leftover sandbox directory");
        }
    }
}

/// The first component of an absolute path.
fn top_level(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("")
}

async fn create_private_dir_all(path: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder.create(path).await
}

async fn write_marker(dir: &Path, marker: &Marker) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(marker)
        .map_err(|e| Error::internal("encoding a process sandbox marker", e))?;
    let temp = dir.join(format!("{MARKER}.tmp"));
    fs::write(&temp, bytes)
        .await
        .map_err(|e| io_error("writing a process sandbox marker", &temp, e))?;
    fs::rename(&temp, dir.join(MARKER))
        .await
        .map_err(|e| io_error("writing a process sandbox marker", dir, e))
}

async fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(|e| io_error("writing a sandbox file", path, e))?;
    file.write_all(bytes)
        .await
        .map_err(|e| io_error("writing a sandbox file", path, e))
}

fn io_error(context: &str, path: &Path, error: std::io::Error) -> Error {
    Error::internal(context, format!("{}: {error}", path.display()))
}

#[async_trait]
impl Provider for ProcessProvider {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tty: true,
            signals: true,
            stop_start: true,
            exec: true,
            files: true,
            port_forward: true,
            network_none: matches!(self.confinement, Confinement::Bubblewrap(_)),
            // Bubblewrap mounts them; unconfined sandboxes have no mounts.
            volumes: matches!(self.confinement, Confinement::Bubblewrap(_)),
            // The host's own network: nothing stands between a sandbox and
            // the host's services, so EGRESS cannot be enforced.
            network_bridge: true,
            ..Capabilities::default()
        }
    }

    async fn info(&self) -> ProviderInfo {
        ProviderInfo {
            name: Self::NAME.to_owned(),
            available: true,
            detail: format!("sandboxes are directories under {}", self.root.display()),
            isolation: match &self.confinement {
                Confinement::Bubblewrap(_) => {
                    "bubblewrap: each sandbox has its own mount, PID, IPC and UTS namespaces \
                     (and network namespace with NETWORK_MODE_NONE, the default; \
                     NETWORK_MODE_BRIDGE is the host's own network, and EGRESS or ALLOW_LIST cannot be \
                     enforced); the host's files are visible read-only, all but the sandbox's own \
                     directory and a private /tmp; commands run as the server's user with every \
                     capability dropped and no resource limits; file operations are confined \
                     beneath the sandbox's own directory"
                        .to_owned()
                }
                Confinement::None => "none: bubblewrap (bwrap) is not available, so commands run \
                    as the server's user on the host, in the sandbox's private directory, on the \
                    host's network; they can see and reach whatever that user can (file operations stay confined beneath \
                    the sandbox's directory)"
                    .to_owned(),
            },
            capabilities: self.capabilities(),
            runtimes: Vec::new(),
        }
    }

    #[instrument(name = "provider.process.create", skip_all, fields(sandbox_id = request.sandbox_id))]
    async fn create(&self, request: ProvisionRequest<'_>) -> Result<String> {
        if matches!(
            request.spec.network,
            NetworkMode::Egress | NetworkMode::AllowList
        ) {
            return Err(Error::failed_precondition(format!(
                "network: provider process cannot enforce {}: its sandboxes share the host's \
                 network unless cut off from it (NETWORK_MODE_NONE)",
                request.spec.network.api_name()
            )));
        }
        let dir = self.sandbox_dir(request.sandbox_id)?;
        if self.read_marker(&dir).await?.is_some() {
            return Ok(dir.display().to_string());
        }
        let volumes = self.volume_binds(request.spec)?;
        // A volume whose storage a crash lost is made again, empty.
        for volume in &volumes {
            create_private_dir_all(&volume.source)
                .await
                .map_err(|e| io_error("creating a volume", &volume.source, e))?;
        }
        let staging = self
            .root
            .join(format!("{CREATING_PREFIX}{}", request.sandbox_id));
        self.remove_leftover(&staging).await;
        let workdir = staging
            .join(ROOTFS)
            .join(request.spec.workdir.trim_start_matches('/'));
        create_private_dir_all(&workdir)
            .await
            .map_err(|e| io_error("creating a process sandbox", &workdir, e))?;
        let marker = Marker {
            sandbox_id: request.sandbox_id.to_owned(),
            tenant: request.tenant.to_owned(),
            workdir: request.spec.workdir.clone(),
            no_network: request.spec.network == NetworkMode::None,
            volumes,
            running: false,
        };
        write_private(
            &staging.join(ENV_FILE),
            &serde_json::to_vec(&request.spec.env)
                .map_err(|e| Error::internal("encoding a sandbox's environment", e))?,
        )
        .await?;
        write_marker(&staging, &marker).await?;
        fs::rename(&staging, &dir)
            .await
            .map_err(|e| io_error("creating a process sandbox", &dir, e))?;
        debug!(path = %dir.display(), "process sandbox created");
        Ok(dir.display().to_string())
    }

    async fn create_volume(&self, volume_id: &str, tenant: &str) -> Result<()> {
        let _ = tenant;
        if !self.capabilities().volumes {
            return Err(Error::failed_precondition(
                "provider process mounts volumes only where bubblewrap confines its sandboxes, \
                 and bwrap is not available here",
            ));
        }
        let dir = self.volume_dir(volume_id)?;
        create_private_dir_all(&dir)
            .await
            .map_err(|e| io_error("creating a volume", &dir, e))
    }

    async fn delete_volume(&self, volume_id: &str) -> Result<()> {
        let dir = self.volume_dir(volume_id)?;
        match fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == IoErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("deleting a volume", &dir, e)),
        }
    }

    #[instrument(name = "provider.process.start", skip(self))]
    async fn start(&self, sandbox_id: &str) -> Result<AgentChannel> {
        self.set_running(sandbox_id, true).await?;
        self.connect(sandbox_id).await
    }

    #[instrument(name = "provider.process.stop", skip(self))]
    async fn stop(&self, sandbox_id: &str) -> Result<()> {
        self.set_running(sandbox_id, false).await
    }

    #[instrument(name = "provider.process.delete", skip(self))]
    async fn delete(&self, sandbox_id: &str) -> Result<()> {
        let dir = self.sandbox_dir(sandbox_id)?;
        AgentFiles::new(&dir).stop(sandbox_id).await?;
        let doomed = self.root.join(format!("{DELETING_PREFIX}{sandbox_id}"));
        match fs::rename(&dir, &doomed).await {
            Ok(()) => {}
            Err(e) if e.kind() == IoErrorKind::NotFound => {}
            Err(e) => return Err(io_error("deleting a process sandbox", &dir, e)),
        }
        for leftover in [
            doomed,
            self.root.join(format!("{CREATING_PREFIX}{sandbox_id}")),
        ] {
            match fs::remove_dir_all(&leftover).await {
                Ok(()) => {}
                Err(e) if e.kind() == IoErrorKind::NotFound => {}
                Err(e) => return Err(io_error("deleting a process sandbox", &leftover, e)),
            }
        }
        Ok(())
    }

    async fn inspect(&self, sandbox_id: &str) -> Result<Option<Observed>> {
        let dir = self.sandbox_dir(sandbox_id)?;
        let agent_alive = AgentFiles::new(&dir).live_pid(sandbox_id).is_some();
        Ok(self.read_marker(&dir).await?.map(|marker| Observed {
            sandbox_id: marker.sandbox_id,
            provider_ref: dir.display().to_string(),
            running: marker.running && agent_alive,
        }))
    }

    async fn connect(&self, sandbox_id: &str) -> Result<AgentChannel> {
        let dir = self.sandbox_dir(sandbox_id)?;
        Ok(AgentChannel::unix_socket(AgentFiles::new(&dir).socket()))
    }

    async fn usage(&self, sandbox_id: &str) -> Result<Usage> {
        let dir = self.sandbox_dir(sandbox_id)?;
        let Some(agent) = AgentFiles::new(&dir).live_pid(sandbox_id) else {
            return Err(Error::failed_precondition(format!(
                "sandbox {sandbox_id}'s agent is not running"
            )));
        };
        tokio::task::spawn_blocking(move || super::proc_usage::measure(agent, &dir))
            .await
            .map_err(|e| Error::internal("measuring a process sandbox", e))
    }

    async fn list(&self) -> Result<Vec<Observed>> {
        let mut entries = fs::read_dir(&self.root)
            .await
            .map_err(|e| io_error("listing process sandboxes", &self.root, e))?;
        let mut found = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("listing process sandboxes", &self.root, e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(CREATING_PREFIX) || name.starts_with(DELETING_PREFIX) {
                self.remove_leftover(&entry.path()).await;
                continue;
            }
            if !crate::ids::is_sandbox_id(&name) {
                continue;
            }
            match self.inspect(&name).await.unwrap_or_else(|error| {
                warn!(path = %entry.path().display(), %error, "unreadable process sandbox marker");
                None
            }) {
                Some(observed) => found.push(observed),
                // A sandbox directory without its marker cannot come from a
                // rename of a complete staging directory; leave it for a human.
                None => {
                    warn!(path = %entry.path().display(), "process sandbox directory has no marker")
                }
            }
        }
        Ok(found)
    }
}
