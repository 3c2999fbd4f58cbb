//! Making sure an image is on the engine: used as it is when present, pulled
//! otherwise, under a deadline, with progress in the log.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;
use tracing::info;

use super::errors::{engine_error, is_not_found};
use crate::error::{Error, ErrorKind, Result};

/// How often pull progress is logged.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// Makes sure `image` is on the engine, pulling it within `timeout` when it
/// is not. NOT_FOUND when the registry has no such image; UNAVAILABLE when the
/// registry cannot be reached; DEADLINE_EXCEEDED when the pull is too slow.
/// Returns the user the image's `USER` names, empty when it names none.
pub(super) async fn ensure(docker: &Docker, image: &str, timeout: Duration) -> Result<String> {
    match docker.inspect_image(image).await {
        Ok(found) => return Ok(user_of(&found)),
        Err(e) if is_not_found(&e) && invalid_reference(image, &e.to_string()).is_none() => {}
        Err(e) => {
            return Err(invalid_reference(image, &e.to_string())
                .unwrap_or_else(|| engine_error(&format!("looking for image {image}"), e)));
        }
    }
    info!(image, "image not on the engine; pulling it");
    let started = Instant::now();
    match tokio::time::timeout(timeout, pull(docker, image)).await {
        Ok(Ok(())) => {
            info!(image, elapsed = ?started.elapsed(), "image pulled");
            let pulled = docker
                .inspect_image(image)
                .await
                .map_err(|e| engine_error(&format!("looking for image {image}"), e))?;
            Ok(user_of(&pulled))
        }
        Ok(Err(error)) => Err(error),
        Err(_) => Err(Error::new(
            ErrorKind::DeadlineExceeded,
            format!(
                "image: pulling {image} did not finish within {}",
                humantime::format_duration(timeout)
            ),
        )),
    }
}

/// The user the image's `USER` names; empty when it names none.
fn user_of(image: &bollard::models::ImageInspect) -> String {
    image
        .config
        .as_ref()
        .and_then(|config| config.user.clone())
        .unwrap_or_default()
}

async fn pull(docker: &Docker, image: &str) -> Result<()> {
    let (from_image, tag) = split_tag(image);
    let mut progress = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(from_image.to_owned()),
            tag: tag.map(str::to_owned),
            ..Default::default()
        }),
        None,
        None,
    );
    let mut logged = Instant::now();
    while let Some(step) = progress.next().await {
        let step = step.map_err(|e| pull_error(image, e))?;
        if logged.elapsed() >= PROGRESS_INTERVAL {
            logged = Instant::now();
            info!(
                image,
                status = step.status.as_deref().unwrap_or(""),
                layer = step.id.as_deref().unwrap_or(""),
                bytes = step
                    .progress_detail
                    .as_ref()
                    .and_then(|p| p.current)
                    .unwrap_or(0),
                of = step
                    .progress_detail
                    .as_ref()
                    .and_then(|p| p.total)
                    .unwrap_or(0),
                "pulling"
            );
        }
    }
    Ok(())
}

/// The repository and tag to ask the engine for. A reference without a tag
/// or digest means `latest` (asking for none would pull every tag).
fn split_tag(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let name_start = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[name_start..].rfind(':') {
        Some(colon) => {
            let at = name_start + colon;
            (&image[..at], Some(&image[at + 1..]))
        }
        None => (image, Some("latest")),
    }
}

/// INVALID_ARGUMENT when the engine's answer says `image` is no valid
/// reference (uppercase letters, spaces, a bad tag).
fn invalid_reference(image: &str, answer: &str) -> Option<Error> {
    let (_, reason) = answer.split_once("invalid reference format")?;
    let reason = reason.trim_start_matches(':').trim();
    Some(Error::invalid_argument(
        "image",
        if reason.is_empty() {
            format!("{image:?} is not a valid image reference")
        } else {
            format!("{image:?} is not a valid image reference: {reason}")
        },
    ))
}

fn pull_error(image: &str, error: bollard::errors::Error) -> Error {
    use bollard::errors::Error as Engine;
    let answer = match &error {
        Engine::DockerResponseServerError { message, .. } => message.clone(),
        Engine::DockerStreamError { error } => error.clone(),
        _ => return engine_error(&format!("pulling image {image}"), error),
    };
    if let Some(error) = invalid_reference(image, &answer) {
        return error;
    }
    let lower = answer.to_lowercase();
    let missing = is_not_found(&error)
        || [
            "not found",
            "manifest unknown",
            "does not exist",
            "pull access denied",
        ]
        .iter()
        .any(|phrase| lower.contains(phrase));
    if missing {
        Error::not_found(format!(
            "image: {image} is not on the engine and its registry does not have it: {answer}"
        ))
    } else {
        Error::unavailable(format!(
            "image: {image} is not on the engine and pulling it failed: {answer}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn tags_default_to_latest_and_registry_ports_are_not_tags() {
        assert_eq!(split_tag("busybox"), ("busybox", Some("latest")));
        assert_eq!(split_tag("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_tag("127.0.0.1:5000/team/app"),
            ("127.0.0.1:5000/team/app", Some("latest"))
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/team/app:v2"),
            ("127.0.0.1:5000/team/app", Some("v2"))
        );
        assert_eq!(split_tag("app@sha256:abcd"), ("app@sha256:abcd", None));
    }
}
