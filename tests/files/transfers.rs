//! Streams and archives: uploads checked against their digest, downloads
//! by range, trees as tar, and a GiB each way with the server's memory
//! bounded.

use super::*;

/// The names in the sandbox's directory `path`, one level deep.
async fn names_in(files: &mut Files, id: &str, path: &str) -> Vec<String> {
    let listed = files
        .list_dir(pb::ListDirRequest {
            sandbox_id: id.into(),
            path: path.into(),
            depth: 1,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    listed.entries.into_iter().map(|e| e.name).collect()
}

async fn uploads_verify_and_downloads_stream(provider: Provider) {
    let (_server, id, mut files) = setup(provider).await;
    const SIZE: u64 = 8 << 20;
    let sha = pattern_sha256(SIZE);
    let header = |path: &str, sha256: &str| pb::UploadHeader {
        sandbox_id: id.clone(),
        path: path.into(),
        mode: 0o640,
        // Unset: the upload makes `data/` itself.
        create_parents: None,
        overwrite: false,
        sha256: sha256.into(),
    };
    let uploaded = upload(
        &mut files,
        header("data/blob", &sha),
        pattern(SIZE, 1 << 20),
    )
    .await
    .unwrap();
    assert_eq!(uploaded.sha256, sha);
    let info = uploaded.info.unwrap();
    assert_eq!((info.size, info.mode), (SIZE as i64, 0o640));
    let request = pb::DownloadRequest {
        sandbox_id: id.clone(),
        path: "data/blob".into(),
        offset: 0,
        length: 0,
    };
    let (info, got, size) = download(&mut files, request.clone()).await;
    assert_eq!((info.size, size, got), (SIZE as i64, SIZE, sha.clone()));
    // A range.
    let (_, _, size) = download(
        &mut files,
        pb::DownloadRequest {
            offset: 1000,
            length: 300_000,
            ..request.clone()
        },
    )
    .await;
    assert_eq!(size, 300_000);

    // A wrong checksum, or an existing file without overwrite: nothing
    // changes and nothing is left behind.
    let wrong = "0".repeat(64);
    code_and_says(
        upload(
            &mut files,
            header("data/other", &wrong),
            pattern(1 << 20, 1 << 20),
        )
        .await,
        Code::InvalidArgument,
        "sha256",
    );
    code_and_says(
        files
            .stat(pb::StatRequest {
                sandbox_id: id.clone(),
                path: "data/other".into(),
            })
            .await,
        Code::NotFound,
        "/workspace/data/other",
    );
    code_and_says(
        upload(&mut files, header("data/blob", ""), pattern(10, 10)).await,
        Code::AlreadyExists,
        "/workspace/data/blob",
    );
    let names = names_in(&mut files, &id, "data").await;
    assert_eq!(names, ["blob"], "no partial file is left");
    assert_eq!(
        download(&mut files, request.clone()).await.1,
        sha,
        "unchanged"
    );

    // Replacing it: the new content, and the old file's hidden second name
    // (freed after the answer) gone soon after.
    let replacement = pattern_sha256(2 << 20);
    let replaced = upload(
        &mut files,
        pb::UploadHeader {
            overwrite: true,
            ..header("data/blob", &replacement)
        },
        pattern(2 << 20, 1 << 20),
    )
    .await
    .unwrap();
    assert_eq!(replaced.sha256, replacement);
    assert_eq!(download(&mut files, request).await.1, replacement);
    eventually(Duration::from_secs(5), "only the new file left", || {
        let mut files = files.clone();
        let id = id.clone();
        async move { (names_in(&mut files, &id, "data").await == ["blob"]).then_some(()) }
    })
    .await;
    code_and_says(
        upload(&mut files, header("data", ""), pattern(10, 10)).await,
        Code::FailedPrecondition,
        "is a directory",
    );
}

async fn a_thousand_file_tree_round_trips_as_an_archive(provider: Provider) {
    let (server, id, mut files) = setup(provider).await;
    // Pack a tree here, upload it, change nothing, download it, compare.
    let mut builder = tar::Builder::new(Vec::new());
    let mut expected = std::collections::BTreeMap::new();
    for n in 0..1000 {
        let name = format!("tree/d{}/f{n}.txt", n % 10);
        let content = format!("file {n}\n").repeat(n % 7 + 1);
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, &name, content.as_bytes())
            .unwrap();
        expected.insert(
            name.trim_start_matches("tree/").to_owned(),
            content.into_bytes(),
        );
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    let messages = std::iter::once(pb::UploadArchiveRequest {
        request: Some(pb::upload_archive_request::Request::Header(
            pb::UploadArchiveHeader {
                sandbox_id: id.clone(),
                path: "unpacked".into(),
                format: pb::ArchiveFormat::TarGzip as i32,
                overwrite: false,
            },
        )),
    })
    .chain(gz.chunks(64 << 10).map(|chunk| pb::UploadArchiveRequest {
        request: Some(pb::upload_archive_request::Request::Chunk(
            chunk.to_vec().into(),
        )),
    }))
    .collect::<Vec<_>>();
    let unpacked = files
        .upload_archive(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unpacked.entries, 1000);
    assert_eq!(
        server
            .shell(&id, "find unpacked -type f | wc -l")
            .await
            .trim(),
        "1000"
    );

    let mut stream = files
        .download_archive(pb::DownloadArchiveRequest {
            sandbox_id: id.clone(),
            path: "unpacked/tree".into(),
            format: pb::ArchiveFormat::Tar as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let mut tar = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        tar.extend(message.chunk);
    }
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut got = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() == tar::EntryType::Regular {
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            got.insert(name, content);
        }
    }
    assert_eq!(got.len(), 1000);
    assert!(got == expected, "the tree came back changed");
}

/// A GiB up and down through a spawned server, whose memory is measured.
async fn a_gib_moves_with_bounded_server_memory(env: &[(&str, &str)]) {
    const SIZE: u64 = 1 << 30;
    let temp = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn_with(temp.path(), env);
    let channel = server.channel().await;
    let id = server
        .client()
        .await
        .create_sandbox(pb::CreateSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap()
        .id;
    let scope = paddock::store::SqlStore::connect(&paddock::store::SqlStore::sqlite_url(
        &temp.path().join("paddock.db"),
    ))
    .await
    .unwrap();
    let _cleanup =
        common::docker::RemoveContainers(paddock::store::Store::store_id(&scope).await.unwrap());
    let mut files = files_client(channel);
    let sha = pattern_sha256(SIZE);
    let pid = server.pid();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let rss = common::spawned::rss_bytes(pid);
                peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let uploaded = upload(
        &mut files,
        pb::UploadHeader {
            sandbox_id: id.clone(),
            path: "big".into(),
            sha256: sha.clone(),
            ..Default::default()
        },
        pattern(SIZE, 1 << 20),
    )
    .await
    .unwrap();
    assert_eq!(uploaded.sha256, sha);
    let (_, got, size) = download(
        &mut files,
        pb::DownloadRequest {
            sandbox_id: id.clone(),
            path: "big".into(),
            offset: 0,
            length: 0,
        },
    )
    .await;
    sampling.abort();
    assert_eq!((size, got), (SIZE, sha));
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "server peak RSS while moving 1 GiB each way: {} MiB",
        peak >> 20
    );
    assert!(peak < 96 << 20, "server peak RSS {} MiB", peak >> 20);
}

#[tokio::test]
async fn a_gib_moves_through_a_process_sandbox_with_bounded_server_memory() {
    a_gib_moves_with_bounded_server_memory(&[]).await;
}

#[tokio::test]
async fn a_gib_moves_through_a_docker_sandbox_with_bounded_server_memory() {
    if !common::docker::available() {
        return;
    }
    let agent = common::docker::agent_binary();
    a_gib_moves_with_bounded_server_memory(&[
        ("PADDOCK_PROVIDER", "docker"),
        ("PADDOCK_DOCKER_DEFAULT_IMAGE", common::docker::BUSYBOX),
        ("PADDOCK_DOCKER_AGENT_BINARY", agent.to_str().unwrap()),
    ])
    .await;
}

on_every_provider!(
    uploads_verify_and_downloads_stream,
    a_thousand_file_tree_round_trips_as_an_archive,
);
