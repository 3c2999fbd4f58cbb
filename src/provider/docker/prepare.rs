//! Preparing a sandbox's spec for the engine: limits it accepts, the image
//! and its USER, the runtime (see [`DockerProvider::offered_runtimes`]), and
//! the network's rules.

use super::engine::NETWORK_CHECK_INTERVAL;
use super::{DockerProvider, MIN_MEMORY_BYTES, MIN_PIDS, images};
use crate::error::{Error, Result};
use crate::sandbox::{NetworkMode, SandboxSpec};

/// The smallest process limit a sandbox under a sandboxing runtime (such as
/// runsc) starts with: gVisor's kernel needs tens of host threads of its own.
const MIN_PIDS_SANDBOXED: u64 = 256;

/// Whether `runtime` runs a kernel of its own inside the sandbox (anything
/// but runc).
pub(super) fn is_sandboxing(runtime: &str) -> bool {
    !matches!(runtime, "runc" | "io.containerd.runc.v2" | "")
}

impl DockerProvider {
    /// The runtimes requests may name, the default first: the server's
    /// default (else the engine's) and the others it allows, each only if
    /// the engine has it registered.
    pub(super) fn offered_runtimes(&self) -> Vec<String> {
        let registered = self.engine.read().expect("engine status").runtimes.clone();
        let Some(engine_default) = registered.first() else {
            return Vec::new();
        };
        let default = self.settings.runtime.as_ref().unwrap_or(engine_default);
        let mut offered = Vec::new();
        for runtime in std::iter::once(default).chain(&self.settings.runtimes) {
            if registered.contains(runtime) && !offered.contains(runtime) {
                offered.push(runtime.clone());
            }
        }
        offered
    }

    /// Checks `spec` against the engine and completes it: limits the engine
    /// accepts, the default image (pulled when missing) and its USER, the
    /// runtime, and the network's rules in place when it asks for EGRESS or
    /// ALLOW_LIST (whose allowed ranges must stay clear of the blocked ones).
    pub(super) async fn prepare_spec(&self, spec: &mut SandboxSpec) -> Result<()> {
        if spec.runtime.is_none() {
            spec.runtime = self.settings.runtime.clone();
        }
        if let Some(runtime) = &spec.runtime {
            let registered = self.engine.read().expect("engine status").runtimes.clone();
            if !registered.contains(runtime) {
                return Err(Error::failed_precondition(format!(
                    "runtime: the Docker engine has no runtime {runtime:?} registered (it has: \
                     {}); its operator adds it to the engine's daemon.json",
                    registered.join(", ")
                )));
            }
        }
        if let Some(memory) = spec.resources.memory_bytes
            && memory < MIN_MEMORY_BYTES
        {
            return Err(Error::invalid_argument(
                "resources.memory_bytes",
                format!(
                    "{memory} is below the Docker engine's minimum of {MIN_MEMORY_BYTES} bytes (6 MiB)"
                ),
            ));
        }
        // Under a sandboxing runtime the engine's limit counts the runtime's
        // own threads too (gVisor's kernel is one process of many threads).
        let (least, counted) = match spec.runtime.as_deref() {
            Some(runtime) if is_sandboxing(runtime) => (
                MIN_PIDS_SANDBOXED,
                "the runtime's own threads (gVisor's kernel runs in the sandbox) count too",
            ),
            _ => (MIN_PIDS, "the sandbox's agent and its threads count too"),
        };
        if let Some(pids) = spec.resources.pids
            && pids < least
        {
            return Err(Error::invalid_argument(
                "resources.pids",
                format!("{pids} is too few: {counted}; ask for at least {least}"),
            ));
        }
        let cpus = self.engine.read().expect("engine status").cpus;
        if let (Some(millis), Some(cpus)) = (spec.resources.cpu_millis, cpus)
            && millis > u64::try_from(cpus).unwrap_or(0) * 1000
        {
            return Err(Error::failed_precondition(format!(
                "resources.cpu_millis: {millis} asks for more than the engine's {cpus} CPUs ({} millis)",
                cpus * 1000
            )));
        }
        if spec.image.is_none() {
            spec.image = Some(self.settings.default_image.clone().ok_or_else(|| {
                Error::invalid_argument(
                    "image",
                    "provider docker needs an image and this server has no default \
                     (docker_default_image)",
                )
            })?);
        }
        match spec.network {
            NetworkMode::Egress => {
                self.egress
                    .ensure_within(&self.docker, NETWORK_CHECK_INTERVAL)
                    .await?
            }
            NetworkMode::AllowList => {
                self.allow_list.check_hosts(&spec.allowed_hosts)?;
                self.allow_list
                    .ensure_within(&self.docker, NETWORK_CHECK_INTERVAL)
                    .await?;
            }
            NetworkMode::None | NetworkMode::Bridge => {}
        }
        self.ensure_agent().await?;
        let image = spec.image.as_deref().expect("image set above");
        let user = images::ensure(&self.docker, image, self.settings.pull_timeout).await?;
        // The image's USER, honoured: the agent runs as root to manage the
        // sandbox, and runs commands as this user.
        if spec.user.is_none() && !user.is_empty() {
            spec.user = Some(user);
        }
        Ok(())
    }
}
