//! Paths and links that try to leave a process sandbox are refused.

use super::*;

/// Escape attempts on the process provider, whose sandboxes are directories
/// of the host: none may read or write outside the sandbox's root.
#[tokio::test]
async fn escapes_from_a_process_sandbox_fail() {
    let (server, id, mut files) = setup(Provider::Process).await;
    let outside = server.data_dir.join("outside-secret");
    std::fs::write(&outside, "host secret").unwrap();
    let root = server.sandbox_dir(&id).join("rootfs");
    // Links made from inside the sandbox, pointing out of it.
    server
        .shell(
            &id,
            &format!(
                "ln -s /etc etc-link; ln -s {} secret-link; ln -s ../../../../../../../.. up; \
             ln -s loop loop; mkdir -p inner; ln -s ../../.. inner/climb",
                outside.display()
            ),
        )
        .await;
    let read = |path: &str| pb::ReadFileRequest {
        sandbox_id: id.clone(),
        path: path.into(),
        ..Default::default()
    };
    for path in [
        "../x",
        "/../etc/passwd",
        "a/../../../etc/passwd",
        "etc-link/passwd",
        "secret-link",
        "up/etc/passwd",
        "inner/climb/etc/passwd",
    ] {
        let status = files.read_file(read(path)).await.unwrap_err();
        assert!(
            matches!(status.code(), Code::PermissionDenied | Code::NotFound),
            "{path}: {status:?}"
        );
        assert_ne!(status.code(), Code::Ok);
    }
    // An absolute path means the sandbox's own /, not the host's.
    code_and_says(
        files.read_file(read("/etc/hostname")).await,
        Code::NotFound,
        "/etc/hostname",
    );
    code_and_says(
        files.read_file(read("loop")).await,
        Code::FailedPrecondition,
        "symbolic links",
    );
    // Writes through the links.
    for path in [
        "etc-link/paddock-was-here",
        "up/tmp/paddock-was-here",
        "inner/climb/x",
    ] {
        let status = files
            .write_file(pb::WriteFileRequest {
                sandbox_id: id.clone(),
                path: path.into(),
                content: b"escaped".to_vec(),
                overwrite: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{path}: {status:?}");
    }
    let status = upload(
        &mut files,
        pb::UploadHeader {
            sandbox_id: id.clone(),
            path: "etc-link/uploaded".into(),
            create_parents: Some(true),
            ..Default::default()
        },
        pattern(10, 10),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Archives: an entry climbing out, and a link entry followed by a file
    // through it.
    for (name, kind, link) in [
        ("../../escaped", tar::EntryType::Regular, None),
        ("hop", tar::EntryType::Symlink, Some("/etc")),
    ] {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(if link.is_some() { 0 } else { 7 });
        if let Some(link) = link {
            builder.append_link(&mut header, name, link).unwrap();
            let mut file = tar::Header::new_gnu();
            file.set_size(7);
            file.set_mode(0o644);
            builder
                .append_data(&mut file, "hop/paddock-was-here", &b"escaped"[..])
                .unwrap();
        } else {
            // The tar crate refuses to write "..": set the name by hand.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, &b"escaped"[..]).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let messages = vec![
            pb::UploadArchiveRequest {
                request: Some(pb::upload_archive_request::Request::Header(
                    pb::UploadArchiveHeader {
                        sandbox_id: id.clone(),
                        path: "unpack".into(),
                        format: pb::ArchiveFormat::Tar as i32,
                        overwrite: true,
                    },
                )),
            },
            pb::UploadArchiveRequest {
                request: Some(pb::upload_archive_request::Request::Chunk(tar.into())),
            },
        ];
        let status = files
            .upload_archive(tokio_stream::iter(messages))
            .await
            .unwrap_err();
        assert!(
            matches!(
                status.code(),
                Code::PermissionDenied | Code::InvalidArgument
            ),
            "{name}: {status:?}"
        );
    }
    // Nothing landed outside the root, and the secret never came back.
    for escaped in [
        std::path::PathBuf::from("/etc/paddock-was-here"),
        std::path::PathBuf::from("/tmp/paddock-was-here"),
        server.sandbox_dir(&id).join("escaped"),
        server.data_dir.join("escaped"),
    ] {
        assert!(!escaped.exists(), "{} was written", escaped.display());
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "host secret");
    assert!(root.join("workspace/etc-link").is_symlink());
}

/// A link swapped in mid-upload: once the upload's first chunk is on disk,
/// the directory it goes to becomes a link to a directory outside the
/// sandbox that the agent could write to were it not confined. The upload
/// is refused, and nothing lands outside.
#[tokio::test]
async fn a_link_swapped_in_mid_upload_is_refused() {
    let (server, id, files) = setup(Provider::Process).await;
    let outside = server.sandbox_dir(&id).join("outside-the-root");
    std::fs::create_dir(&outside).unwrap();
    server.shell(&id, "mkdir swap").await;
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender
        .send(pb::UploadRequest {
            request: Some(pb::upload_request::Request::Header(pb::UploadHeader {
                sandbox_id: id.clone(),
                path: "swap/file".into(),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    sender
        .send(pb::UploadRequest {
            request: Some(pb::upload_request::Request::Chunk(b"first".to_vec().into())),
        })
        .await
        .unwrap();
    let mut uploader = files.clone();
    let uploading = tokio::spawn(async move {
        uploader
            .upload(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
    });
    // The swap comes once the first chunk is in the upload's staged file.
    let swap = server.sandbox_dir(&id).join("rootfs/workspace/swap");
    common::eventually(
        Duration::from_secs(20),
        "the first chunk to be staged",
        || async {
            std::fs::read_dir(&swap)
                .ok()?
                .flatten()
                .any(|entry| std::fs::read(entry.path()).is_ok_and(|bytes| bytes == b"first"))
                .then_some(())
        },
    )
    .await;
    server
        .shell(
            &id,
            &format!("mv swap swap.old && ln -s {} swap", outside.display()),
        )
        .await;
    sender
        .send(pb::UploadRequest {
            request: Some(pb::upload_request::Request::Chunk(
                b"second".to_vec().into(),
            )),
        })
        .await
        .unwrap();
    drop(sender);
    let status = uploading.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing landed outside the sandbox's root"
    );
}
