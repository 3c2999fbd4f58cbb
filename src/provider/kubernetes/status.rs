//! What a pod's status says about its sandbox, in sentences a user reads:
//! running, still coming up, or ended and why.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::names::{INSTALL_CONTAINER, SANDBOX_CONTAINER};

/// A pod's state as the sandbox sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PodState {
    /// The sandbox container runs.
    Running,
    /// Still coming up.
    Pending,
    /// It cannot come up without someone's help (an image that cannot be
    /// pulled, a Secret or claim missing), for this reason.
    Stuck(String),
    /// It ended, for this reason; it does not run again.
    Ended(String),
}

/// The state of `pod`.
pub(super) fn state_of(pod: &Pod) -> PodState {
    let Some(status) = &pod.status else {
        return PodState::Pending;
    };
    if status.reason.as_deref() == Some("Evicted") {
        return PodState::Ended(format!(
            "evicted: {}",
            sentence(
                status
                    .message
                    .as_deref()
                    .unwrap_or("the node ran low on resources")
            )
        ));
    }
    let init = status.init_container_statuses.iter().flatten();
    let main = status.container_statuses.iter().flatten();
    for container in init.chain(main) {
        if let Some(reason) = problem(container) {
            return reason;
        }
    }
    match status.phase.as_deref() {
        Some("Failed" | "Succeeded") => PodState::Ended(format!(
            "its pod ended{}",
            status
                .message
                .as_deref()
                .map(|m| format!(": {}", sentence(m)))
                .unwrap_or_default()
        )),
        Some("Running")
            if status.container_statuses.iter().flatten().any(|c| {
                c.name == SANDBOX_CONTAINER && c.state.as_ref().is_some_and(|s| s.running.is_some())
            }) =>
        {
            PodState::Running
        }
        _ => PodState::Pending,
    }
}

/// What stops `container`, if anything.
fn problem(container: &ContainerStatus) -> Option<PodState> {
    let state = container.state.as_ref()?;
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let message = waiting.message.as_deref().unwrap_or(reason);
        return match reason {
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
                Some(PodState::Stuck(format!(
                    "image {:?} could not be pulled: {}",
                    container.image,
                    sentence(message)
                )))
            }
            "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError" => {
                Some(PodState::Stuck(format!(
                    "its container cannot be made: {}",
                    sentence(message)
                )))
            }
            _ => None,
        };
    }
    let terminated = state.terminated.as_ref()?;
    if container.name == INSTALL_CONTAINER {
        if terminated.exit_code == 0 {
            return None;
        }
        return Some(PodState::Ended(format!(
            "the agent could not be copied into the pod: its init container exited with code {}{}",
            terminated.exit_code,
            terminated
                .message
                .as_deref()
                .map(|m| format!(": {}", sentence(m)))
                .unwrap_or_default()
        )));
    }
    let reason = match terminated.reason.as_deref() {
        Some("OOMKilled") => {
            "killed for memory: the sandbox used all of its memory limit".to_owned()
        }
        Some("Evicted") => format!(
            "evicted: {}",
            sentence(terminated.message.as_deref().unwrap_or("by the node"))
        ),
        reason => format!(
            "its agent exited with code {}{}",
            terminated.exit_code,
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ),
    };
    Some(PodState::Ended(reason))
}

/// `text` as the middle of a sentence: first letter small, no final dot.
fn sentence(text: &str) -> String {
    let text = text.trim().trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) if chars.clone().next().is_some_and(char::is_lowercase) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        PodStatus,
    };

    use super::*;

    fn pod(status: PodStatus) -> Pod {
        Pod {
            status: Some(status),
            ..Default::default()
        }
    }

    fn container(name: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: name.to_owned(),
            image: "python:3.12".to_owned(),
            state: Some(state),
            ..Default::default()
        }
    }

    #[test]
    fn running_only_when_the_sandbox_container_runs() {
        let running = ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        };
        let up = pod(PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![container(SANDBOX_CONTAINER, running)]),
            ..Default::default()
        });
        assert_eq!(state_of(&up), PodState::Running);
        assert_eq!(state_of(&Pod::default()), PodState::Pending);
    }

    #[test]
    fn reasons_read_as_sentences() {
        let evicted = pod(PodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            message: Some("The node was low on resource: memory.".into()),
            ..Default::default()
        });
        assert_eq!(
            state_of(&evicted),
            PodState::Ended("evicted: the node was low on resource: memory".into())
        );
        let pull = pod(PodStatus {
            phase: Some("Pending".into()),
            container_statuses: Some(vec![container(
                SANDBOX_CONTAINER,
                ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ErrImagePull".into()),
                        message: Some("Manifest unknown".into()),
                    }),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        });
        assert_eq!(
            state_of(&pull),
            PodState::Stuck("image \"python:3.12\" could not be pulled: manifest unknown".into())
        );
        let oom = pod(PodStatus {
            phase: Some("Failed".into()),
            container_statuses: Some(vec![container(
                SANDBOX_CONTAINER,
                ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 137,
                        reason: Some("OOMKilled".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )]),
            ..Default::default()
        });
        assert_eq!(
            state_of(&oom),
            PodState::Ended("killed for memory: the sandbox used all of its memory limit".into())
        );
    }
}
