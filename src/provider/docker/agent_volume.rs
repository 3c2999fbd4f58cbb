//! Putting the agent on an engine: once per engine and agent build, an image
//! holding only the static agent binary is imported, and a named volume is
//! filled from it (the engine copies an image's files into an empty volume
//! mounted over them). Every sandbox container mounts that volume read-only,
//! so a create costs no copy, and this works on a remote engine too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListImagesOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions, WaitContainerOptions,
};
use futures::StreamExt;
use tracing::{debug, info, warn};

use super::errors::{engine_error, is_not_found};
use super::layout::{self, labels_of};
use crate::error::{Error, Result};

/// How many times the agent in its volume is tried before the volume is
/// taken for broken and filled again, and the wait between tries.
const INSTALL_ATTEMPTS: usize = 12;
const INSTALL_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(500);
/// How old another build's unused agent volume must be to be removed.
const OLD_VOLUME_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The static agent binary and the names of its image and volume.
#[derive(Debug, Clone)]
pub(super) struct AgentBuild {
    /// Where the binary is on the server's host.
    pub binary: PathBuf,
    /// The binary's bytes' digest, hex.
    pub sha256: String,
    /// The image holding the binary.
    pub image: String,
    /// The volume every sandbox mounts it from.
    pub volume: String,
}

impl AgentBuild {
    /// Reads `binary` and checks that it can run in any container: it must be
    /// statically linked (no ELF interpreter).
    pub(super) fn inspect(binary: &Path) -> Result<Self> {
        use std::io::{Read, Seek};
        let unreadable = |e: std::io::Error| {
            Error::unavailable(format!(
                "cannot read the agent binary {}: {e}",
                binary.display()
            ))
        };
        let mut file = std::fs::File::open(binary).map_err(unreadable)?;
        // The ELF and program headers come first; the rest is only hashed.
        let mut head = Vec::new();
        (&mut file)
            .take(ELF_HEAD_BYTES)
            .read_to_end(&mut head)
            .map_err(unreadable)?;
        match elf_interpreter(&head) {
            ElfKind::Static => {}
            ElfKind::Dynamic => {
                return Err(Error::unavailable(format!(
                    "the agent binary {} is dynamically linked, so it cannot run inside \
                     arbitrary images; build a static one with scripts/build-static-agent and \
                     pass it with --docker-agent-binary",
                    binary.display()
                )));
            }
            ElfKind::NotElf => {
                return Err(Error::unavailable(format!(
                    "the agent binary {} is not a 64-bit Linux executable",
                    binary.display()
                )));
            }
        }
        file.rewind().map_err(unreadable)?;
        let sha256 =
            crate::ids::sha256_hex_of_reader(std::io::BufReader::new(file)).map_err(unreadable)?;
        let short = &sha256[..16];
        Ok(Self {
            binary: binary.to_path_buf(),
            image: format!("paddock-agent:{short}"),
            volume: format!("paddock-agent-{short}"),
            sha256,
        })
    }

    /// Makes sure the volume holds a working agent, importing the image and
    /// filling the volume when needed; the check runs the agent from the
    /// volume, so a volume left half-filled by a crash is found and refilled.
    pub(super) async fn install(&self, docker: &Docker, scope: &str) -> Result<()> {
        // Another server (a replica, or a test beside this one) may be
        // filling the same volume right now: its copy is not executable until
        // complete. Give it time before calling the volume broken.
        let mut last_error = None;
        for attempt in 0..INSTALL_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(INSTALL_RETRY_DELAY).await;
            }
            match self.verify(docker, scope).await {
                Ok(true) => {
                    self.remove_other_images(docker).await;
                    self.remove_old_volumes(docker).await;
                    return Ok(());
                }
                Ok(false) => last_error = None,
                Err(error) => last_error = Some(error),
            }
        }
        if let Some(error) = last_error.filter(|e| e.kind() == crate::error::ErrorKind::Unavailable)
        {
            // The engine itself is failing: nothing says the volume is bad.
            return Err(error);
        }
        warn!(
            volume = %self.volume,
            "the agent volume does not hold a working agent; filling it again"
        );
        match docker
            .remove_volume(&self.volume, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(Error::unavailable(format!(
                    "the agent volume {} is broken and cannot be removed (is a container still \
                     using it?): {e}",
                    self.volume
                )));
            }
        }
        if !self.verify(docker, scope).await? {
            return Err(Error::unavailable(format!(
                "the agent copied into volume {} does not run on this engine",
                self.volume
            )));
        }
        Ok(())
    }

    /// Removes agent images of other builds (and copies left untagged by
    /// two imports racing): an image only serves to fill its volume, and is
    /// imported again should a volume ever need it. Volumes are left alone,
    /// since sandboxes of other builds may still mount them.
    async fn remove_other_images(&self, docker: &Docker) {
        let (repository, _) = self.image.split_once(':').unwrap_or((&self.image, ""));
        let images = docker
            .list_images(Some(ListImagesOptions {
                filters: Some(HashMap::from([(
                    "label".to_owned(),
                    vec![layout::LABEL_SCOPE.to_owned()],
                )])),
                ..Default::default()
            }))
            .await
            .unwrap_or_default();
        for image in images {
            let ours = image.repo_tags.iter().any(|tag| tag == &self.image);
            let untagged = image.repo_tags.iter().all(|tag| tag == "<none>:<none>");
            let agent = untagged
                || image
                    .repo_tags
                    .iter()
                    .any(|tag| tag.starts_with(&format!("{repository}:")));
            if agent && !ours {
                match docker
                    .remove_image(&image.id, None::<RemoveImageOptions>, None)
                    .await
                {
                    Ok(_) => {
                        info!(image = %image.id, tags = ?image.repo_tags, "removed an old agent image")
                    }
                    Err(error) => {
                        debug!(image = %image.id, %error, "cannot remove an old agent image")
                    }
                }
            }
        }
    }

    /// Removes the agent volumes of other builds made over an hour ago that
    /// no container uses (the engine refuses to remove one in use). A server
    /// of another build still running refills its volume when it next needs
    /// it; the hour spares one that is being rolled out beside this one.
    async fn remove_old_volumes(&self, docker: &Docker) {
        let Ok(listed) = docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(HashMap::from([(
                    "label".to_owned(),
                    vec![layout::LABEL_AGENT_SHA256.to_owned()],
                )])),
            }))
            .await
        else {
            return;
        };
        let an_hour_ago = std::time::SystemTime::now() - OLD_VOLUME_AGE;
        for volume in listed.volumes.unwrap_or_default() {
            let other_build = volume.labels.get(layout::LABEL_AGENT_SHA256) != Some(&self.sha256);
            let old = volume
                .created_at
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                .is_some_and(|created| created < an_hour_ago);
            if other_build && old {
                match docker
                    .remove_volume(&volume.name, None::<RemoveVolumeOptions>)
                    .await
                {
                    Ok(()) => info!(volume = %volume.name, "removed an old agent volume"),
                    Err(error) => debug!(volume = %volume.name, %error, "kept an old agent volume"),
                }
            }
        }
    }

    /// Runs `paddock --version` from the volume (filling an empty or new
    /// volume from the image first); true when it ran.
    async fn verify(&self, docker: &Docker, scope: &str) -> Result<bool> {
        self.import_image(docker, scope).await?;
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(self.volume.clone()),
                labels: Some(HashMap::from([
                    (layout::LABEL_SCOPE.to_owned(), scope.to_owned()),
                    (layout::LABEL_AGENT_SHA256.to_owned(), self.sha256.clone()),
                ])),
                ..Default::default()
            })
            .await
            .map_err(|e| engine_error("creating the agent volume", e))?;
        let name = format!("paddock-agent-check-{}", uuid::Uuid::now_v7().simple());
        let mut labels = labels_of(scope, layout::ROLE_AGENT_CHECK);
        labels.insert(layout::LABEL_AGENT_SHA256.to_owned(), self.sha256.clone());
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(self.image.clone()),
                    entrypoint: Some(vec![layout::AGENT_BINARY.to_owned()]),
                    cmd: Some(vec!["--version".to_owned()]),
                    labels: Some(labels),
                    network_disabled: Some(true),
                    host_config: Some(HostConfig {
                        network_mode: Some("none".to_owned()),
                        mounts: Some(vec![Mount {
                            target: Some(layout::AGENT_DIR.to_owned()),
                            source: Some(self.volume.clone()),
                            typ: Some(MountType::VOLUME),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| engine_error("creating the agent check container", e))?;
        let outcome = async {
            docker
                .start_container(&name, None)
                .await
                .map_err(|e| engine_error("starting the agent check container", e))?;
            let mut waits = docker.wait_container(&name, None::<WaitContainerOptions>);
            let exit = match waits.next().await {
                Some(Ok(response)) => response.status_code,
                // A non-zero exit arrives as an error carrying the code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
                Some(Err(e)) => return Err(engine_error("waiting for the agent check", e)),
                None => -1,
            };
            Ok(exit == 0)
        }
        .await;
        let _ = docker
            .remove_container(
                &name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        outcome
    }

    /// Imports the image holding only the agent, unless the engine has it.
    async fn import_image(&self, docker: &Docker, scope: &str) -> Result<()> {
        match docker.inspect_image(&self.image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(engine_error("looking for the agent image", e)),
        }
        let binary_path = Path::new(layout::AGENT_BINARY);
        let binary = binary_path.strip_prefix("/").unwrap_or(binary_path);
        let tarball = {
            let bytes = self.read_binary()?;
            let mut builder = tar::Builder::new(Vec::with_capacity(bytes.len() + 4096));
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o755);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_cksum();
            builder
                .append_data(&mut header, binary, bytes.as_slice())
                .and_then(|()| builder.into_inner())
                .map_err(|e| Error::internal("packing the agent image", e))?
        };
        let (repo, tag) = self
            .image
            .split_once(':')
            .unwrap_or((&self.image, "latest"));
        info!(image = %self.image, bytes = tarball.len(), "importing the agent image");
        let mut progress = docker.create_image(
            Some(CreateImageOptions {
                from_src: Some("-".to_owned()),
                repo: Some(repo.to_owned()),
                tag: Some(tag.to_owned()),
                changes: vec![format!("LABEL {}={scope}", layout::LABEL_SCOPE)],
                ..Default::default()
            }),
            Some(bollard::body_full(tarball.into())),
            None,
        );
        while let Some(step) = progress.next().await {
            step.map_err(|e| engine_error("importing the agent image", e))?;
        }
        Ok(())
    }

    fn read_binary(&self) -> Result<Vec<u8>> {
        // The digest was taken at start-up; check it again so that the image
        // holds exactly the bytes it is named after.
        let bytes = std::fs::read(&self.binary)
            .map_err(|e| Error::unavailable(format!("cannot read the agent binary: {e}")))?;
        if crate::ids::sha256_hex(&bytes) != self.sha256 {
            return Err(Error::unavailable(
                "the agent binary changed on disk since the server started; restart the server",
            ));
        }
        Ok(bytes)
    }
}

/// How much of the agent binary is read to find its ELF and program
/// headers (they sit at the start of every executable linkers make).
const ELF_HEAD_BYTES: u64 = 64 << 10;

enum ElfKind {
    Static,
    Dynamic,
    NotElf,
}

/// Whether a 64-bit little-endian ELF file names a program interpreter
/// (PT_INTERP), that is, needs a dynamic loader from the image.
fn elf_interpreter(bytes: &[u8]) -> ElfKind {
    const PT_INTERP: u32 = 3;
    let read_u16 = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let read_u32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    };
    let read_u64 = |at: usize| {
        bytes
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    // Magic, 64-bit class, little-endian.
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1]) {
        return ElfKind::NotElf;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (read_u64(0x20), read_u16(0x36), read_u16(0x38))
    else {
        return ElfKind::NotElf;
    };
    for index in 0..usize::from(phnum) {
        let at = usize::try_from(phoff)
            .unwrap_or(usize::MAX)
            .saturating_add(index * usize::from(phentsize));
        match read_u32(at) {
            Some(PT_INTERP) => return ElfKind::Dynamic,
            Some(_) => {}
            None => return ElfKind::NotElf,
        }
    }
    ElfKind::Static
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_binary_is_dynamic_and_garbage_is_not_elf() {
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(matches!(elf_interpreter(&own), ElfKind::Dynamic));
        assert!(matches!(elf_interpreter(b"#!/bin/sh\n"), ElfKind::NotElf));
        assert!(matches!(elf_interpreter(&own[..64]), ElfKind::NotElf));
    }
}
