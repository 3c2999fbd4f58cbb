//! The container a sandbox is: its image, entrypoint, mounts, limits and
//! labels, as a pure function of the sandbox's spec and the server's
//! settings (tested below without an engine).

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, MountVolumeOptions, RestartPolicy,
    RestartPolicyNameEnum,
};

use super::layout::{self, KEPT_CAPABILITIES, labels_of};
use crate::error::{Error, Result};
use crate::provider::contract::{AgentLaunch, ProvisionRequest};
use crate::sandbox::NetworkMode;

/// How long a stopping container's agent may take to end its commands
/// before the engine kills it.
pub(super) const STOP_GRACE_SECONDS: i32 = 5;

/// The container of the sandbox `request` describes, for the store `scope`,
/// its agent run as `agent` says from the volume `agent_volume`.
/// INVALID_ARGUMENT when the spec names no image (`prepare` fills it in).
pub(super) fn container_spec(
    request: &ProvisionRequest<'_>,
    agent: &AgentLaunch,
    scope: &str,
    agent_volume: &str,
) -> Result<ContainerCreateBody> {
    let spec = request.spec;
    let image = spec
        .image
        .clone()
        .ok_or_else(|| Error::invalid_argument("image", "provider docker needs an image"))?;
    let mut labels = labels_of(scope, layout::ROLE_SANDBOX);
    labels.insert(
        layout::LABEL_SANDBOX_ID.to_owned(),
        request.sandbox_id.to_owned(),
    );
    labels.insert(layout::LABEL_TENANT.to_owned(), request.tenant.to_owned());
    if spec.network == NetworkMode::AllowList {
        labels.insert(
            layout::LABEL_ALLOWED_HOSTS.to_owned(),
            super::allow_list::hosts_label(&spec.allowed_hosts),
        );
    }
    let mut mounts = vec![
        Mount {
            target: Some(layout::AGENT_DIR.to_owned()),
            source: Some(agent_volume.to_owned()),
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
        source: Some(volume.object_name()),
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
                NetworkMode::Egress => super::egress::NETWORK,
                NetworkMode::AllowList => super::allow_list::NETWORK,
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
        runtime: spec.runtime.clone(),
        cap_drop: Some(vec!["ALL".to_owned()]),
        cap_add: Some(
            KEPT_CAPABILITIES
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
        ),
        // No setuid binary or file capability raises a process's privileges;
        // the engine's default seccomp profile and masked /proc and /sys
        // paths stay as they are (nothing here turns them off).
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
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
    let mut cmd = vec![
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
    ];
    if let Some(user) = &spec.user {
        cmd.extend(["--default-user".to_owned(), user.clone()]);
    }
    Ok(ContainerCreateBody {
        image: Some(image),
        entrypoint: Some(vec![layout::AGENT_BINARY.to_owned()]),
        cmd: Some(cmd),
        env: Some(env),
        working_dir: Some(spec.workdir.clone()),
        // The agent runs as root, with the capabilities above, to manage
        // the sandbox; it runs commands as the image's USER (`spec.user`).
        user: Some("0".to_owned()),
        labels: Some(labels),
        stop_signal: Some("SIGTERM".to_owned()),
        stop_timeout: Some(i64::from(STOP_GRACE_SECONDS)),
        host_config: Some(host_config),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sandbox::{Resources, SandboxSpec, Volume};

    const ID: &str = "sbx_0123456789abcdef0123456789abcdef";

    fn agent() -> AgentLaunch {
        AgentLaunch {
            binary: "/usr/bin/paddock".into(),
            max_commands: 7,
            output_budget: 9 << 20,
        }
    }

    fn spec_of(spec: &SandboxSpec) -> ContainerCreateBody {
        let request = ProvisionRequest {
            sandbox_id: ID,
            tenant: "team-a",
            spec,
        };
        container_spec(&request, &agent(), "store-1", "paddock-agent-abc").unwrap()
    }

    fn mount_targets(body: &ContainerCreateBody) -> Vec<(String, Option<String>, bool)> {
        body.host_config
            .as_ref()
            .and_then(|h| h.mounts.as_ref())
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m.target.clone().unwrap(),
                    m.source.clone(),
                    m.read_only.unwrap_or(false),
                )
            })
            .collect()
    }

    #[test]
    fn the_agent_is_the_entrypoint_and_the_container_is_labelled() {
        let body = spec_of(&SandboxSpec {
            image: Some("busybox:1".into()),
            env: BTreeMap::from([("TOKEN".into(), "s3cret".into())]),
            workdir: "/workspace".into(),
            ..SandboxSpec::default()
        });
        assert_eq!(body.image.as_deref(), Some("busybox:1"));
        assert_eq!(
            body.entrypoint,
            Some(vec!["/.paddock/bin/paddock".to_owned()])
        );
        let cmd = body.cmd.clone().unwrap();
        assert_eq!(cmd[0], "agent");
        for pair in [
            ["--sandbox-id", ID],
            ["--workdir", "/workspace"],
            ["--max-commands", "7"],
            ["--output-budget", "9437184"],
            ["--socket", "/.paddock/state/agent.sock"],
        ] {
            assert!(cmd.windows(2).any(|w| w == pair), "{pair:?} in {cmd:?}");
        }
        assert_eq!(body.env, Some(vec!["TOKEN=s3cret".to_owned()]));
        assert_eq!(body.working_dir.as_deref(), Some("/workspace"));
        let labels = body.labels.unwrap();
        assert_eq!(labels["io.paddock.scope"], "store-1");
        assert_eq!(labels["io.paddock.role"], "sandbox");
        assert_eq!(labels["io.paddock.sandbox-id"], ID);
        assert_eq!(labels["io.paddock.tenant"], "team-a");
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("paddock-egress"));
        assert_eq!(host.init, Some(false), "the agent is the init");
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO),
            "Paddock, not the engine, decides when a sandbox runs"
        );
        assert_eq!(
            (host.nano_cpus, host.memory, host.pids_limit),
            (None, None, None)
        );
    }

    #[test]
    fn every_capability_but_a_shells_is_dropped_and_privileges_never_grow() {
        let host = spec_of(&SandboxSpec {
            image: Some("busybox:1".into()),
            workdir: "/workspace".into(),
            ..SandboxSpec::default()
        })
        .host_config
        .unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        let kept = host.cap_add.unwrap();
        for dangerous in [
            "MKNOD",
            "NET_RAW",
            "SYS_ADMIN",
            "SYS_CHROOT",
            "SETPCAP",
            "NET_ADMIN",
        ] {
            assert!(
                !kept.iter().any(|c| c == dangerous),
                "{dangerous} in {kept:?}"
            );
        }
        assert!(
            kept.iter().any(|c| c == "SETUID"),
            "commands can run as other users"
        );
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        assert_eq!(host.privileged, None);
    }

    #[test]
    fn the_agent_comes_from_its_volume_read_only_and_state_from_an_anonymous_one() {
        let body = spec_of(&SandboxSpec {
            image: Some("busybox:1".into()),
            workdir: "/workspace".into(),
            ..SandboxSpec::default()
        });
        assert_eq!(
            mount_targets(&body),
            vec![
                (
                    "/.paddock/bin".to_owned(),
                    Some("paddock-agent-abc".to_owned()),
                    true
                ),
                ("/.paddock/state".to_owned(), None, false),
            ]
        );
    }

    #[test]
    fn limits_mean_what_they_say() {
        let body = spec_of(&SandboxSpec {
            image: Some("busybox:1".into()),
            workdir: "/".into(),
            resources: Resources {
                cpu_millis: Some(1500),
                memory_bytes: Some(256 << 20),
                pids: Some(64),
            },
            network: NetworkMode::None,
            ..SandboxSpec::default()
        });
        let host = body.host_config.unwrap();
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(256 << 20));
        assert_eq!(
            host.memory_swap,
            Some(256 << 20),
            "no swap beyond the limit"
        );
        assert_eq!(host.pids_limit, Some(64));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
    }

    #[test]
    fn a_read_only_root_keeps_the_workdir_and_tmp_writable() {
        let body = spec_of(&SandboxSpec {
            image: Some("busybox:1".into()),
            workdir: "/workspace".into(),
            read_only_root: true,
            volumes: vec![Volume {
                name: "cache".into(),
                mount_path: "/cache".into(),
                read_only: true,
                ..Volume::default()
            }],
            ..SandboxSpec::default()
        });
        let mounts = mount_targets(&body);
        assert!(mounts.contains(&("/cache".to_owned(), Some("cache".to_owned()), true)));
        assert!(
            mounts.contains(&("/workspace".to_owned(), None, false)),
            "the workdir gets a volume of its own: {mounts:?}"
        );
        let host = body.host_config.unwrap();
        assert_eq!(host.readonly_rootfs, Some(true));
        assert!(host.tmpfs.unwrap().contains_key("/tmp"));

        // A workdir that is a named volume needs no second one.
        let on_volume = spec_of(&SandboxSpec {
            image: Some("busybox:1".into()),
            workdir: "/cache".into(),
            read_only_root: true,
            volumes: vec![Volume {
                name: "cache".into(),
                mount_path: "/cache".into(),
                read_only: false,
                ..Volume::default()
            }],
            ..SandboxSpec::default()
        });
        let targets: Vec<String> = mount_targets(&on_volume).into_iter().map(|m| m.0).collect();
        assert_eq!(targets.iter().filter(|t| *t == "/cache").count(), 1);
    }

    #[test]
    fn a_spec_without_an_image_is_refused() {
        let spec = SandboxSpec::default();
        let request = ProvisionRequest {
            sandbox_id: ID,
            tenant: "team-a",
            spec: &spec,
        };
        let error = container_spec(&request, &agent(), "store-1", "v").unwrap_err();
        assert!(error.message().starts_with("image:"), "{}", error.message());
    }
}
