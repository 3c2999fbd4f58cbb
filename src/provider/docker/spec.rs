//! The container a sandbox is: its image, entrypoint, mounts, limits and
//! labels.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions, RestartPolicy,
    RestartPolicyNameEnum,
};

use super::agent_volume::AgentBuild;
use super::layout::{self, labels_of};
use super::{DockerProvider, STOP_GRACE_SECONDS};
use crate::error::{Error, Result};
use crate::provider::ProvisionRequest;
use crate::sandbox::NetworkMode;

impl DockerProvider {
    pub(super) fn container_config(
        &self,
        request: &ProvisionRequest<'_>,
        build: &AgentBuild,
    ) -> Result<ContainerCreateBody> {
        let spec = request.spec;
        let image = spec
            .image
            .clone()
            .ok_or_else(|| Error::invalid_argument("image", "provider docker needs an image"))?;
        let agent = &self.settings.agent;
        let mut labels = labels_of(&self.settings.scope, layout::ROLE_SANDBOX);
        labels.insert(
            layout::LABEL_SANDBOX_ID.to_owned(),
            request.sandbox_id.to_owned(),
        );
        labels.insert(layout::LABEL_TENANT.to_owned(), request.tenant.to_owned());
        let mut mounts = vec![
            Mount {
                target: Some(layout::AGENT_DIR.to_owned()),
                source: Some(build.volume.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(true),
                volume_options: Some(MountVolumeOptions {
                    no_copy: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
            // An anonymous volume: removed with the container.
            Mount {
                target: Some(layout::STATE_DIR.to_owned()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            },
        ];
        mounts.extend(spec.volumes.iter().map(|volume| Mount {
            target: Some(volume.mount_path.clone()),
            source: Some(volume.name.clone()),
            typ: Some(MountType::VOLUME),
            read_only: Some(volume.read_only),
            ..Default::default()
        }));
        // A read-only root still needs somewhere to work: the workdir gets
        // a volume of its own (kept across stop and start) and /tmp a tmpfs.
        let workdir_mounted = spec.volumes.iter().any(|v| v.mount_path == spec.workdir);
        if spec.read_only_root && !workdir_mounted && spec.workdir != "/" {
            mounts.push(Mount {
                target: Some(spec.workdir.clone()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            });
        }
        let resources = &spec.resources;
        let host_config = HostConfig {
            tmpfs: spec
                .read_only_root
                .then(|| HashMap::from([("/tmp".to_owned(), "rw,nosuid,nodev".to_owned())])),
            mounts: Some(mounts),
            network_mode: Some(
                match spec.network {
                    NetworkMode::None => "none",
                    NetworkMode::Bridge => "bridge",
                }
                .to_owned(),
            ),
            nano_cpus: resources
                .cpu_millis
                .map(|millis| i64::try_from(millis.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
            memory: resources
                .memory_bytes
                .map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
            // No swap beyond the memory limit: the limit means what it says.
            memory_swap: resources
                .memory_bytes
                .map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
            pids_limit: resources
                .pids
                .map(|pids| i64::try_from(pids).unwrap_or(i64::MAX)),
            readonly_rootfs: Some(spec.read_only_root),
            // The agent is the container's init; Paddock, not the engine,
            // decides when a sandbox runs.
            init: Some(false),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(ContainerCreateBody {
            image: Some(image),
            entrypoint: Some(vec![layout::AGENT_BINARY.to_owned()]),
            cmd: Some(vec![
                "agent".to_owned(),
                "--socket".to_owned(),
                layout::AGENT_SOCKET.to_owned(),
                "--sandbox-id".to_owned(),
                request.sandbox_id.to_owned(),
                "--state-dir".to_owned(),
                layout::STATE_DIR.to_owned(),
                "--workdir".to_owned(),
                spec.workdir.clone(),
                "--inherit-env".to_owned(),
                "--max-commands".to_owned(),
                agent.max_commands.to_string(),
                "--output-budget".to_owned(),
                agent.output_budget.to_string(),
            ]),
            env: Some(env),
            working_dir: Some(spec.workdir.clone()),
            // The agent runs commands as root inside the container; running
            // them as the image's user is not supported yet.
            user: Some("0".to_owned()),
            labels: Some(labels),
            stop_signal: Some("SIGTERM".to_owned()),
            stop_timeout: Some(i64::from(STOP_GRACE_SECONDS)),
            host_config: Some(host_config),
            ..Default::default()
        })
    }
}
