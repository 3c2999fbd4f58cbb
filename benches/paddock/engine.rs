//! The floor beneath the Docker provider: the Docker Engine API driven
//! directly with bollard, as `docker exec`, `docker run` and `docker cp`
//! drive it, on the same engine and image.

use std::time::Duration;

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    ContainerArchiveInfoOptions, CreateContainerOptions, DownloadFromContainerOptions,
    InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    UploadToContainerOptions,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::ops::StdinFeed;

/// The image every Docker measurement uses (scripts/test-images).
pub const IMAGE: &str = "paddock-test/busybox:latest";

/// The label on containers the floor makes, so a run that dies leaves
/// containers anyone can find and remove.
pub const LABEL: &str = "io.paddock.bench";

/// The engine, or why the Docker sections cannot run here.
pub async fn engine() -> Result<Docker, String> {
    if std::env::var_os(crate::server::STATIC_AGENT).is_none() {
        return Err(format!(
            "{} is not set (scripts/build-static-agent builds the static agent)",
            crate::server::STATIC_AGENT
        ));
    }
    let docker = Docker::connect_with_defaults()
        .map_err(|e| format!("cannot reach the Docker engine: {e}"))?
        .negotiate_version()
        .await
        .map_err(|e| format!("cannot reach the Docker engine: {e}"))?;
    docker
        .ping()
        .await
        .map_err(|e| format!("no Docker engine answers: {e}"))?;
    docker
        .inspect_image(IMAGE)
        .await
        .map_err(|_| format!("the engine lacks {IMAGE} (scripts/test-images builds it)"))?;
    Ok(docker)
}

/// Waits for the engine to finish tidying up after a raw request. The
/// engine answers an exec or an archive request before dockerd, containerd
/// and runc are done with it; on a small machine that leftover work would
/// land in the next Paddock sample.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The engine network the container `name` is on.
pub async fn network_of(docker: &Docker, name: &str) -> String {
    docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .expect("inspect a container")
        .host_config
        .and_then(|host| host.network_mode)
        .unwrap_or_else(|| "default".to_owned())
}

/// `docker create` + `docker start` of a container that stays up
/// (`sleep`), as a sandbox must, on the engine network `network`; returns
/// its name.
pub async fn create_and_start(docker: &Docker, network: &str) -> String {
    let name = format!("paddock-bench-{}", uuid::Uuid::now_v7().simple());
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(IMAGE.to_owned()),
                cmd: Some(vec!["sleep".to_owned(), "3600".to_owned()]),
                labels: Some([(LABEL.to_owned(), "floor".to_owned())].into()),
                host_config: Some(HostConfig {
                    network_mode: Some(network.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create a container");
    docker
        .start_container(&name, None)
        .await
        .expect("start a container");
    name
}

pub async fn remove(docker: &Docker, name: &str) {
    docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
        .expect("remove a container");
}

/// The floor of create → first output: create and start a container on
/// `network`, exec `echo hi` in it and read its output, timed; then remove
/// the container, untimed.
pub async fn first_output(docker: &Docker, network: &str) -> Duration {
    let started = std::time::Instant::now();
    let name = create_and_start(docker, network).await;
    assert_eq!(exec(docker, &name, &["echo", "hi"], None).await, 3);
    let took = started.elapsed();
    remove(docker, &name).await;
    took
}

/// Removes containers a benchmark run that died left behind.
pub async fn remove_leftovers(docker: &Docker) {
    let leftovers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some([("label".to_owned(), vec![LABEL.to_owned()])].into()),
            ..Default::default()
        }))
        .await
        .unwrap_or_default();
    for container in leftovers {
        if let Some(id) = container.id {
            remove(docker, &id).await;
        }
    }
}

/// `docker exec` of `command`: create, start attached, feed `stdin` and
/// end it, read the output to the end, inspect for the exit code (which
/// must be 0). Returns the stdout bytes.
pub async fn exec(
    docker: &Docker,
    container: &str,
    command: &[&str],
    stdin: Option<StdinFeed>,
) -> u64 {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                attach_stdin: Some(stdin.is_some()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                cmd: Some(command.to_vec()),
                ..Default::default()
            },
        )
        .await
        .expect("create an exec");
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                // Room for the engine's largest frames, so the floor is not
                // slowed by a small read buffer.
                output_capacity: Some(256 << 10),
                ..Default::default()
            }),
        )
        .await
        .expect("start an exec");
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = started
    else {
        unreachable!("attached")
    };
    let feeding = async move {
        if let Some(feed) = stdin {
            for chunk in feed.chunks() {
                input.write_all(&chunk).await.expect("write stdin");
            }
            input.shutdown().await.expect("end stdin");
        }
    };
    let reading = async {
        let mut stdout = 0u64;
        while let Some(frame) = output.next().await {
            if let bollard::container::LogOutput::StdOut { message } = frame.expect("exec output") {
                stdout += message.len() as u64;
            }
        }
        stdout
    };
    let ((), stdout) = tokio::join!(feeding, reading);
    let inspected = docker
        .inspect_exec(&exec.id)
        .await
        .expect("inspect an exec");
    assert_eq!(inspected.exit_code, Some(0), "{command:?} failed");
    stdout
}

/// `docker exec … wc -c` fed `bytes`: checks the count that comes back.
pub async fn exec_stdin(docker: &Docker, container: &str, bytes: u64) {
    // `wc -c` prints the count; the output is the count's digits and a
    // newline, which is all that is checked here.
    let out = exec(docker, container, &["wc", "-c"], Some(StdinFeed(bytes))).await;
    assert_eq!(out, bytes.to_string().len() as u64 + 1, "wc -c answered");
}

/// `HEAD /containers/{id}/archive`: the engine's stat.
pub async fn stat(docker: &Docker, container: &str, path: &str) {
    docker
        .get_container_archive_info(
            container,
            Some(ContainerArchiveInfoOptions { path: path.into() }),
        )
        .await
        .expect("HEAD archive");
}

/// `PUT /containers/{id}/archive` of `tar` into `dir`.
pub async fn put_archive(docker: &Docker, container: &str, dir: &str, tar: Vec<Bytes>) {
    docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: dir.into(),
                ..Default::default()
            }),
            bollard::body_stream(futures::stream::iter(tar)),
        )
        .await
        .expect("PUT archive");
}

/// `GET /containers/{id}/archive` of `path`: the whole tar.
pub async fn get_archive(docker: &Docker, container: &str, path: &str) -> Vec<u8> {
    let mut stream = docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions { path: path.into() }),
    );
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar.extend_from_slice(&chunk.expect("GET archive"));
    }
    tar
}

/// `GET /containers/{id}/archive`, counting the bytes without keeping them.
pub async fn get_archive_len(docker: &Docker, container: &str, path: &str) -> u64 {
    let mut stream = docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions { path: path.into() }),
    );
    let mut total = 0;
    while let Some(chunk) = stream.next().await {
        total += chunk.expect("GET archive").len() as u64;
    }
    total
}

pub async fn inspect(docker: &Docker, container: &str) {
    docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await
        .expect("inspect a container");
}

pub async fn list(docker: &Docker) -> usize {
    docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .expect("list containers")
        .len()
}

/// A tar holding one file of `bytes` bytes named `name`, as chunks.
pub fn tar_of_one_file(name: &str, bytes: u64) -> Vec<Bytes> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).expect("tar path");
    header.set_size(bytes);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let padding = (512 - bytes % 512) % 512;
    std::iter::once(Bytes::copy_from_slice(header.as_bytes()))
        .chain(StdinFeed(bytes).chunks())
        .chain(std::iter::once(Bytes::from(vec![
            0u8;
            padding as usize + 1024
        ])))
        .collect()
}

/// The content of the first entry of a tar.
pub fn untar_one(tar: &[u8]) -> Vec<u8> {
    let mut archive = tar::Archive::new(tar);
    let mut entry = archive
        .entries()
        .expect("tar")
        .next()
        .expect("an entry")
        .expect("an entry");
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut content).expect("entry content");
    content
}

/// A tar of a tree of `files` small files (1 to 4 KiB) in 20 directories.
pub fn tree_tar(files: usize) -> Bytes {
    let mut builder = tar::Builder::new(Vec::new());
    for i in 0..files {
        let content: Vec<u8> = (0..1024 + (i * 37) % 3072)
            .map(|b| (b % 251) as u8)
            .collect();
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(
                &mut header,
                format!("dir{:02}/file{i:04}.txt", i % 20),
                content.as_slice(),
            )
            .expect("tar entry");
    }
    builder.into_inner().expect("tar").into()
}

/// The number of regular files in a tar.
pub fn files_in(tar: &[u8]) -> usize {
    tar::Archive::new(tar)
        .entries()
        .expect("tar")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.header().entry_type() == tar::EntryType::Regular)
        })
        .count()
}
