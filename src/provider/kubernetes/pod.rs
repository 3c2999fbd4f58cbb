//! The pod of a sandbox, as a pure function of what its Secret recorded and
//! the server's settings: the agent copied in by an init container from the
//! Paddock image and run as the sandbox container's PID 1 in the user's
//! image, the environment read from the Secret, the workspace and the
//! agent's state on the sandbox's claim, limits, and a restrictive
//! securityContext.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::names::{self, AGENT_BINARY, AGENT_DIR, AGENT_SOCKET, KEPT_CAPABILITIES, STATE_DIR};
use super::objects::{Recorded, STOP_GRACE_SECONDS, metadata};
use super::settings::KubernetesSettings;
use crate::error::{Error, Result};

/// The user the Paddock image runs as.
const IMAGE_USER: i64 = 10001;
/// The largest the agent's copy may grow in its emptyDir.
const AGENT_DIR_LIMIT: &str = "128Mi";
/// The names of the pod's volumes.
const VOLUME_AGENT: &str = "agent";
const VOLUME_DATA: &str = "data";
const VOLUME_TMP: &str = "tmp";
/// The subdirectories of the sandbox's claim.
const SUBPATH_STATE: &str = "state";
const SUBPATH_WORKDIR: &str = "workdir";

/// The pod of sandbox `id` as `recorded` describes it.
pub(super) fn pod(id: &str, recorded: &Recorded, settings: &KubernetesSettings) -> Result<Pod> {
    let spec = &recorded.spec;
    let image = spec
        .image
        .clone()
        .ok_or_else(|| Error::invalid_argument("image", "provider kubernetes needs an image"))?;
    let name = names::object_name(id)?;
    let mut volumes = vec![
        Volume {
            name: VOLUME_AGENT.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: Some(Quantity(AGENT_DIR_LIMIT.to_owned())),
            }),
            ..Default::default()
        },
        Volume {
            name: VOLUME_DATA.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name.clone(),
                read_only: None,
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: VOLUME_AGENT.to_owned(),
            mount_path: AGENT_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: VOLUME_DATA.to_owned(),
            mount_path: STATE_DIR.to_owned(),
            sub_path: Some(SUBPATH_STATE.to_owned()),
            ..Default::default()
        },
    ];
    for (index, volume) in spec.volumes.iter().enumerate() {
        let volume_name = format!("volume-{index}");
        volumes.push(Volume {
            name: volume_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::volume_claim_name(&volume.object_name()),
                read_only: Some(volume.read_only),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: volume_name,
            mount_path: volume.mount_path.clone(),
            read_only: Some(volume.read_only),
            ..Default::default()
        });
    }
    // The workdir is what stop and start keep: it lives on the claim
    // (unless a named volume is mounted there).
    let workdir_mounted = spec.volumes.iter().any(|v| v.mount_path == spec.workdir);
    if !workdir_mounted && spec.workdir != "/" {
        mounts.push(VolumeMount {
            name: VOLUME_DATA.to_owned(),
            mount_path: spec.workdir.clone(),
            sub_path: Some(SUBPATH_WORKDIR.to_owned()),
            ..Default::default()
        });
    }
    if spec.read_only_root {
        volumes.push(Volume {
            name: VOLUME_TMP.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: VOLUME_TMP.to_owned(),
            mount_path: "/tmp".to_owned(),
            ..Default::default()
        });
    }
    let env = spec
        .env
        .keys()
        .map(|key| EnvVar {
            name: key.clone(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: name.clone(),
                    key: format!("{}{key}", names::ENV_KEY_PREFIX),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        })
        .collect();
    let mut args = vec![
        "agent".to_owned(),
        "--socket".to_owned(),
        AGENT_SOCKET.to_owned(),
        "--sandbox-id".to_owned(),
        id.to_owned(),
        "--state-dir".to_owned(),
        STATE_DIR.to_owned(),
        "--workdir".to_owned(),
        spec.workdir.clone(),
        "--inherit-env".to_owned(),
        "--max-commands".to_owned(),
        settings.agent.max_commands.to_string(),
        "--output-budget".to_owned(),
        settings.agent.output_budget.to_string(),
    ];
    if let Some(user) = &spec.user {
        args.extend(["--default-user".to_owned(), user.clone()]);
    }
    let mut limits = BTreeMap::new();
    if let Some(millis) = spec.resources.cpu_millis {
        limits.insert("cpu".to_owned(), Quantity(format!("{millis}m")));
    }
    if let Some(bytes) = spec.resources.memory_bytes {
        limits.insert("memory".to_owned(), Quantity(bytes.to_string()));
    }
    let sandbox = Container {
        name: names::SANDBOX_CONTAINER.to_owned(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec![AGENT_BINARY.to_owned()]),
        args: Some(args),
        env: Some(env),
        working_dir: Some(spec.workdir.clone()),
        volume_mounts: Some(mounts),
        // Requests equal to limits: the sandbox gets what it may use.
        resources: Some(ResourceRequirements {
            requests: (!limits.is_empty()).then(|| limits.clone()),
            limits: (!limits.is_empty()).then_some(limits),
            ..Default::default()
        }),
        // The agent runs as root, with the kept capabilities, to manage the
        // sandbox; it runs commands as the image's USER.
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(spec.read_only_root),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: Some(KEPT_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let install = Container {
        name: names::INSTALL_CONTAINER.to_owned(),
        image: Some(settings.agent_image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec![
            names::IMAGE_BINARY.to_owned(),
            "install-agent".to_owned(),
            AGENT_BINARY.to_owned(),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: VOLUME_AGENT.to_owned(),
            mount_path: AGENT_DIR.to_owned(),
            ..Default::default()
        }]),
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("500m".to_owned())),
                ("memory".to_owned(), Quantity("64Mi".to_owned())),
            ])),
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("50m".to_owned())),
                ("memory".to_owned(), Quantity("16Mi".to_owned())),
            ])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(IMAGE_USER),
            run_as_group: Some(IMAGE_USER),
            run_as_non_root: Some(true),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(runtime_default()),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(Pod {
        metadata: metadata(&name, settings, id, &recorded.tenant),
        spec: Some(PodSpec {
            init_containers: Some(vec![install]),
            containers: vec![sandbox],
            volumes: Some(volumes),
            // Paddock, not the kubelet, decides when a sandbox runs.
            restart_policy: Some("Never".to_owned()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(STOP_GRACE_SECONDS),
            runtime_class_name: spec.runtime.clone(),
            node_selector: (!settings.node_selector.is_empty())
                .then(|| settings.node_selector.clone()),
            tolerations: (!settings.tolerations.is_empty()).then(|| settings.tolerations.clone()),
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::provider::kubernetes::objects;
    use crate::provider::kubernetes::settings::test_settings;
    use crate::sandbox::{Resources, SandboxSpec, Volume};

    const ID: &str = "sbx_0123456789abcdef0123456789abcdef";

    fn pod_of(spec: SandboxSpec) -> Pod {
        let settings = test_settings();
        let secret = objects::secret(ID, "team-a", &spec, &settings).unwrap();
        pod(ID, &objects::recorded(&secret).unwrap(), &settings).unwrap()
    }

    #[test]
    fn the_agent_is_copied_in_and_run_as_pid_1_with_env_from_the_secret() {
        let pod = pod_of(SandboxSpec {
            image: Some("python:3.12".into()),
            env: BTreeMap::from([("TOKEN".into(), "s3cret-value".into())]),
            workdir: "/workspace".into(),
            resources: Resources {
                cpu_millis: Some(500),
                memory_bytes: Some(256 << 20),
                pids: Some(100),
            },
            ..SandboxSpec::default()
        });
        let json = serde_json::to_string(&pod).unwrap();
        assert!(
            !json.contains("s3cret-value"),
            "no env value inline: {json}"
        );
        let meta = &pod.metadata;
        assert_eq!(
            meta.name.as_deref(),
            Some("paddock-sbx-0123456789abcdef0123456789abcdef")
        );
        assert_eq!(meta.namespace.as_deref(), Some("sandboxes"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["io.paddock.scope"], "store-1");
        assert_eq!(labels["io.paddock.sandbox-id"], ID);
        assert_eq!(labels["io.paddock.tenant"], "team-a");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.automount_service_account_token, Some(false));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.node_selector.unwrap()["pool"], "sandboxes");
        assert_eq!(spec.tolerations.unwrap().len(), 1);
        let init = &spec.init_containers.unwrap()[0];
        assert_eq!(init.image.as_deref(), Some("paddock:1.2.3"));
        assert_eq!(
            init.command.as_deref().unwrap(),
            [
                "/usr/local/bin/paddock",
                "install-agent",
                "/.paddock/bin/paddock"
            ]
        );
        let sandbox = &spec.containers[0];
        assert_eq!(sandbox.image.as_deref(), Some("python:3.12"));
        assert_eq!(
            sandbox.command.as_deref().unwrap(),
            ["/.paddock/bin/paddock"]
        );
        let args = sandbox.args.clone().unwrap();
        assert_eq!(args[0], "agent");
        for pair in [
            ["--sandbox-id", ID],
            ["--max-commands", "7"],
            ["--workdir", "/workspace"],
        ] {
            assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
        }
        let env = &sandbox.env.as_ref().unwrap()[0];
        assert_eq!(env.name, "TOKEN");
        let from = env
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(from.key, "env.TOKEN");
        let limits = sandbox.resources.as_ref().unwrap().limits.clone().unwrap();
        assert_eq!(limits["cpu"].0, "500m");
        assert_eq!(limits["memory"].0, "268435456");
        let security = sandbox.security_context.as_ref().unwrap();
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.privileged, Some(false));
        let capabilities = security.capabilities.as_ref().unwrap();
        assert_eq!(capabilities.drop.as_deref().unwrap(), ["ALL"]);
        assert!(
            !capabilities
                .add
                .as_ref()
                .unwrap()
                .contains(&"SYS_ADMIN".to_owned())
        );
        let mounts: Vec<_> = sandbox
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| (m.mount_path.as_str(), m.sub_path.as_deref(), m.read_only))
            .collect();
        assert!(
            mounts.contains(&("/.paddock/bin", None, Some(true))),
            "{mounts:?}"
        );
        assert!(
            mounts.contains(&("/.paddock/state", Some("state"), None)),
            "{mounts:?}"
        );
        assert!(
            mounts.contains(&("/workspace", Some("workdir"), None)),
            "{mounts:?}"
        );
    }

    #[test]
    fn read_only_root_volumes_and_runtime_class() {
        let pod = pod_of(SandboxSpec {
            image: Some("busybox".into()),
            workdir: "/data".into(),
            read_only_root: true,
            runtime: Some("gvisor".into()),
            volumes: vec![Volume {
                name: "Cache_1".into(),
                mount_path: "/data".into(),
                read_only: true,
                ..Volume::default()
            }],
            ..SandboxSpec::default()
        });
        let spec = pod.spec.unwrap();
        assert_eq!(spec.runtime_class_name.as_deref(), Some("gvisor"));
        let sandbox = &spec.containers[0];
        let security = sandbox.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        let mounts = sandbox.volume_mounts.as_ref().unwrap();
        assert!(mounts.iter().any(|m| m.mount_path == "/tmp"));
        // The named volume holds the workdir: no workdir subPath besides it.
        let at_data: Vec<_> = mounts.iter().filter(|m| m.mount_path == "/data").collect();
        assert_eq!(at_data.len(), 1);
        assert_eq!(at_data[0].read_only, Some(true));
        let claim = spec
            .volumes
            .unwrap()
            .into_iter()
            .find_map(|v| {
                v.persistent_volume_claim
                    .filter(|c| c.claim_name.contains("volume"))
            })
            .unwrap();
        assert!(
            claim.claim_name.starts_with("paddock-volume-cache-1-"),
            "{}",
            claim.claim_name
        );
    }
}
