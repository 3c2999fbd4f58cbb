//! Template images: built from a Dockerfile through the engine's build API
//! (its classic builder, so a build FROM a local image needs no registry),
//! or committed from a sandbox's container.

use std::collections::VecDeque;

use bollard::models::ContainerConfig;
use bollard::query_parameters::{BuildImageOptions, CommitContainerOptions, RemoveImageOptions};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::DockerProvider;
use super::errors::{engine_error, is_not_found, status_code};
use super::layout::labels_of;
use crate::error::{Error, Result};
use crate::provider::contract::{BuildContext, ImageBuild};

/// The role of a template image.
const ROLE_TEMPLATE_IMAGE: &str = "template-image";
/// The most memory one build step may use: 2 GiB, as near as the API's
/// 32-bit field allows.
const BUILD_MEMORY_BYTES: i32 = i32::MAX;
/// The log lines kept to explain a failed step.
const TAIL_LINES: usize = 12;

/// What a build said so far: the step it is at and its last lines.
#[derive(Default)]
struct BuildLog {
    step: Option<String>,
    tail: VecDeque<String>,
    pending: String,
}

impl BuildLog {
    /// Takes a piece of the build's output; returns its complete lines.
    fn take(&mut self, text: &str) -> Vec<String> {
        self.pending.push_str(text);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']).to_owned();
            self.note(&line);
            lines.push(line);
        }
        lines
    }

    /// The unfinished last line, if any.
    fn rest(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        (!rest.is_empty()).then(|| {
            self.note(&rest);
            rest
        })
    }

    fn note(&mut self, line: &str) {
        if line.starts_with("Step ") {
            self.step = Some(line.to_owned());
            self.tail.clear();
        } else if !line.trim().is_empty() && !line.starts_with(" ---> ") {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(line.to_owned());
        }
    }

    /// The error of a failed build: the step and its last output.
    fn failure(&self, error: &str) -> Error {
        let step = self
            .step
            .as_deref()
            .map(|step| format!(" at {step}"))
            .unwrap_or_default();
        let output: Vec<&str> = self
            .tail
            .iter()
            .map(String::as_str)
            .filter(|line| !line.contains(error))
            .collect();
        let output = if output.is_empty() {
            String::new()
        } else {
            format!("; its last output:\n{}", output.join("\n"))
        };
        Error::invalid_argument(
            "build",
            format!("the build failed{step}: {}{output}", error.trim()),
        )
    }
}

impl DockerProvider {
    pub(super) async fn build(
        &self,
        build: ImageBuild,
        context: BuildContext,
        log: mpsc::Sender<String>,
    ) -> Result<()> {
        // RUN steps are untrusted code: they get the EGRESS network (the
        // internet, never the host or a sandbox) when it is enforced, else
        // none at all.
        let network = if self.egress.failure().is_none() {
            super::egress::NETWORK
        } else {
            "none"
        };
        let options = BuildImageOptions {
            dockerfile: build.dockerfile.clone(),
            t: Some(build.tag.clone()),
            rm: true,
            forcerm: true,
            buildargs: Some(build.build_args.clone()),
            labels: Some(labels_of(&self.settings.scope, ROLE_TEMPLATE_IMAGE)),
            networkmode: Some(network.to_owned()),
            memory: Some(BUILD_MEMORY_BYTES),
            memswap: Some(BUILD_MEMORY_BYTES),
            ..Default::default()
        };
        let mut said = BuildLog::default();
        let mut answers =
            self.docker
                .build_image(options, None, Some(bollard::body_try_stream(context)));
        while let Some(answer) = answers.next().await {
            let info = match answer {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(said.failure(&error));
                }
                Err(e) if matches!(status_code(&e), Some(400 | 500)) => {
                    return Err(said.failure(&e.to_string()));
                }
                Err(e) => return Err(engine_error("building an image", e)),
            };
            if let Some(text) = &info.stream {
                for line in said.take(text) {
                    // A caller gone away does not stop the build: its image
                    // is the template's still.
                    let _ = log.send(line).await;
                }
            }
            if let Some(detail) = &info.error_detail {
                let error = detail.message.clone().unwrap_or_default();
                return Err(said.failure(&error));
            }
        }
        if let Some(rest) = said.rest() {
            let _ = log.send(rest).await;
        }
        Ok(())
    }

    pub(super) async fn commit(&self, sandbox_id: &str, tag: &str) -> Result<()> {
        let name = Self::container_name(sandbox_id)?;
        let (repo, version) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
        self.docker
            .commit_container(
                CommitContainerOptions {
                    container: Some(name),
                    repo: Some(repo.to_owned()),
                    tag: Some(version.to_owned()),
                    comment: Some(format!("snapshot of {sandbox_id}")),
                    pause: true,
                    ..Default::default()
                },
                ContainerConfig {
                    labels: Some(labels_of(&self.settings.scope, ROLE_TEMPLATE_IMAGE)),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| engine_error("capturing the sandbox's filesystem", e))?;
        Ok(())
    }

    pub(super) async fn remove_template_image(&self, tag: &str) -> Result<()> {
        match self
            .docker
            .remove_image(tag, None::<RemoveImageOptions>, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => Err(Error::failed_precondition(format!(
                "image {tag}: a container on the engine still uses it"
            ))),
            Err(e) => Err(engine_error("removing a template image", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_is_named_with_its_output() {
        let mut log = BuildLog::default();
        let lines = log
            .take("Step 1/3 : FROM paddock:test\n ---> 1234\nStep 2/3 : RUN echo half-way && ex");
        assert_eq!(lines, ["Step 1/3 : FROM paddock:test", " ---> 1234"]);
        let lines = log.take("it 3\n ---> Running in abc\nhalf-way\n");
        assert_eq!(
            lines,
            [
                "Step 2/3 : RUN echo half-way && exit 3",
                " ---> Running in abc",
                "half-way"
            ]
        );
        let error = log.failure(
            "The command '/bin/sh -c echo half-way && exit 3' returned a non-zero code: 3",
        );
        assert_eq!(error.kind(), crate::error::ErrorKind::InvalidArgument);
        let message = error.message();
        assert!(
            message.contains("at Step 2/3 : RUN echo half-way && exit 3")
                && message.contains("returned a non-zero code: 3")
                && message.ends_with("half-way"),
            "{message}"
        );
    }
}
