//! FileService through gRPC on every provider: transfers that verify and
//! stream, archives, and the small operations, plus the escape corpus of the
//! process provider and transfers of a GiB with the server's memory bounded.

mod common;

use std::time::Duration;

use common::spawned::ServerProcess;
use common::{Provider, TestServer};
use paddock::pb;
use paddock::pb::file_service_client::FileServiceClient;
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic::transport::Channel;

type Files = FileServiceClient<Channel>;

async fn setup(provider: Provider) -> (TestServer, String, Files) {
    let server = TestServer::for_provider(provider).await;
    let id = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await
        .id;
    let files = files_client(server.channel().await);
    (server, id, files)
}

fn files_client(channel: Channel) -> Files {
    FileServiceClient::new(channel)
        .max_decoding_message_size(8 << 20)
        .max_encoding_message_size(8 << 20)
}

async fn write(files: &mut Files, id: &str, path: &str, content: &[u8]) -> pb::FileInfo {
    files
        .write_file(pb::WriteFileRequest {
            sandbox_id: id.into(),
            path: path.into(),
            content: content.to_vec(),
            create_parents: true,
            overwrite: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap()
}

async fn read(files: &mut Files, request: pb::ReadFileRequest) -> pb::ReadFileResponse {
    files.read_file(request).await.unwrap().into_inner()
}

fn code_and_says<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, says: &str) {
    let status = result.expect_err("an error");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(says),
        "{:?} does not say {says:?}",
        status.message()
    );
}

/// Uploads `content` (in 1 MiB chunks) and returns the answer.
async fn upload(
    files: &mut Files,
    header: pb::UploadHeader,
    content: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> Result<pb::UploadResponse, tonic::Status> {
    let messages = std::iter::once(pb::UploadRequest {
        request: Some(pb::upload_request::Request::Header(header)),
    })
    .chain(content.map(|chunk| pb::UploadRequest {
        request: Some(pb::upload_request::Request::Chunk(chunk.into())),
    }));
    files
        .upload(tokio_stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

/// Downloads a file: its info and its bytes' sha256 and length.
async fn download(files: &mut Files, request: pb::DownloadRequest) -> (pb::FileInfo, String, u64) {
    let mut stream = files.download(request).await.unwrap().into_inner();
    let Some(pb::download_response::Response::Info(info)) =
        stream.message().await.unwrap().unwrap().response
    else {
        panic!("info comes first");
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(message) = stream.message().await.unwrap() {
        let Some(pb::download_response::Response::Chunk(chunk)) = message.response else {
            panic!("then chunks");
        };
        assert!(chunk.len() <= 256 << 10);
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (info, hex(&hasher.finalize()), size)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic bytes: `n` of them in chunks of `chunk`.
fn pattern(n: u64, chunk: usize) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    let mut sent = 0u64;
    std::iter::from_fn(move || {
        if sent == n {
            return None;
        }
        let len = (chunk as u64).min(n - sent) as usize;
        let block: Vec<u8> = (0..len).map(|i| ((sent + i as u64) % 251) as u8).collect();
        sent += len as u64;
        Some(block)
    })
}

fn pattern_sha256(n: u64) -> String {
    let mut hasher = Sha256::new();
    for block in pattern(n, 1 << 20) {
        hasher.update(&block);
    }
    hex(&hasher.finalize())
}

async fn small_operations_behave_as_documented(provider: Provider) {
    let (server, id, mut files) = setup(provider).await;
    let req = |path: &str| pb::ReadFileRequest {
        sandbox_id: id.clone(),
        path: path.into(),
        ..Default::default()
    };

    // Write (relative paths resolve against the workdir), and commands see it.
    let lines: String = (1..=10).map(|n| format!("line{n}\n")).collect();
    let info = write(&mut files, &id, "notes/ten.txt", lines.as_bytes()).await;
    assert_eq!(info.path, "/workspace/notes/ten.txt");
    assert_eq!(info.size, lines.len() as i64);
    assert_eq!(server.shell(&id, "cat notes/ten.txt").await, lines);
    code_and_says(
        files
            .write_file(pb::WriteFileRequest {
                sandbox_id: id.clone(),
                path: "notes/ten.txt".into(),
                content: b"x".to_vec(),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "/workspace/notes/ten.txt",
    );
    code_and_says(
        files
            .write_file(pb::WriteFileRequest {
                sandbox_id: id.clone(),
                path: "missing/dir/file".into(),
                content: b"x".to_vec(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "/workspace/missing/dir",
    );

    // Read by lines: offset is the first line, limit the most lines.
    let part = read(
        &mut files,
        pb::ReadFileRequest {
            offset: 3,
            limit: 2,
            ..req("notes/ten.txt")
        },
    )
    .await;
    assert_eq!(part.content, b"line3\nline4\n");
    assert_eq!((part.first_line, part.lines, part.truncated), (3, 2, true));
    let tail = read(
        &mut files,
        pb::ReadFileRequest {
            offset: 9,
            ..req("notes/ten.txt")
        },
    )
    .await;
    assert_eq!(tail.content, b"line9\nline10\n");
    assert!(!tail.truncated);
    let capped = read(
        &mut files,
        pb::ReadFileRequest {
            max_bytes: 14,
            ..req("notes/ten.txt")
        },
    )
    .await;
    assert_eq!(capped.content, b"line1\nline2\n", "cut at a line's end");
    assert!(capped.truncated);
    // ...and by bytes.
    let bytes = read(
        &mut files,
        pb::ReadFileRequest {
            byte_offset: 6,
            byte_length: 5,
            ..req("notes/ten.txt")
        },
    )
    .await;
    assert_eq!(bytes.content, b"line2");
    assert!(bytes.truncated);
    assert_eq!(bytes.size, lines.len() as i64);

    // Edit: unique, absent, ambiguous, replace-all.
    write(
        &mut files,
        &id,
        "src/main.rs",
        b"fn main() {\n    run(1);\n    run(2);\n}\n",
    )
    .await;
    let edit = |old: &str, new: &str, all: bool| pb::EditFileRequest {
        sandbox_id: id.clone(),
        path: "src/main.rs".into(),
        old_text: old.into(),
        new_text: new.into(),
        replace_all: all,
    };
    let edited = files
        .edit_file(edit("run(1)", "start(1)", false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.replacements, 1);
    code_and_says(
        files.edit_file(edit("absent()", "x", false)).await,
        Code::FailedPrecondition,
        "does not appear",
    );
    write(&mut files, &id, "src/twice.rs", b"a; a;\n").await;
    code_and_says(
        files
            .edit_file(pb::EditFileRequest {
                path: "src/twice.rs".into(),
                ..edit("a;", "b;", false)
            })
            .await,
        Code::FailedPrecondition,
        "2 times",
    );
    let all = files
        .edit_file(pb::EditFileRequest {
            path: "src/twice.rs".into(),
            ..edit("a;", "b;", true)
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.replacements, 2);
    assert_eq!(
        read(&mut files, req("src/main.rs")).await.content,
        b"fn main() {\n    start(1);\n    run(2);\n}\n"
    );
    assert_eq!(
        read(&mut files, req("src/twice.rs")).await.content,
        b"b; b;\n"
    );

    // List, find, grep.
    write(&mut files, &id, "src/lib/deep.rs", b"pub fn Deep() {}\n").await;
    write(&mut files, &id, "src/blob.bin", b"fn main\0binary").await;
    let listed = files
        .list_dir(pb::ListDirRequest {
            sandbox_id: id.clone(),
            path: "src".into(),
            depth: 2,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "/workspace/src/blob.bin",
            "/workspace/src/lib",
            "/workspace/src/lib/deep.rs",
            "/workspace/src/main.rs",
            "/workspace/src/twice.rs"
        ]
    );
    assert!(!listed.truncated);
    let shallow = files
        .list_dir(pb::ListDirRequest {
            sandbox_id: id.clone(),
            path: "src".into(),
            depth: 1,
            limit: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shallow.entries.len(), 2);
    assert!(shallow.truncated);
    let found = files
        .find_files(pb::FindFilesRequest {
            sandbox_id: id.clone(),
            path: "src".into(),
            pattern: "**/*.rs".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        found.paths,
        [
            "/workspace/src/lib/deep.rs",
            "/workspace/src/main.rs",
            "/workspace/src/twice.rs"
        ]
    );
    let top = files
        .find_files(pb::FindFilesRequest {
            sandbox_id: id.clone(),
            path: "src".into(),
            pattern: "*.rs".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(top.paths.len(), 2, "{:?}", top.paths);
    let grep = files
        .grep(pb::GrepRequest {
            sandbox_id: id.clone(),
            path: String::new(),
            pattern: "fn (main|deep)".into(),
            glob: String::new(),
            ignore_case: true,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let hits: Vec<(String, i64)> = grep
        .matches
        .iter()
        .map(|m| (m.path.clone(), m.line_number))
        .collect();
    assert_eq!(
        hits,
        [
            ("/workspace/src/lib/deep.rs".to_owned(), 1),
            ("/workspace/src/main.rs".to_owned(), 1)
        ]
    );
    assert_eq!(grep.binary_files_skipped, 1);
    let limited = files
        .grep(pb::GrepRequest {
            sandbox_id: id.clone(),
            path: "src".into(),
            pattern: "[a-z]".into(),
            glob: "*.rs".into(),
            ignore_case: false,
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(limited.matches.len(), 1);
    assert!(limited.truncated);

    // Stat, make, move, remove, and their errors.
    let stat = |path: &str| pb::StatRequest {
        sandbox_id: id.clone(),
        path: path.into(),
    };
    let dir = files
        .stat(stat("src"))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(dir.r#type, pb::FileType::Directory as i32);
    code_and_says(
        files.stat(stat("nothing/here")).await,
        Code::NotFound,
        "/workspace/nothing/here",
    );
    code_and_says(
        files.read_file(req("src")).await,
        Code::FailedPrecondition,
        "/workspace/src",
    );
    let made = files
        .make_dir(pb::MakeDirRequest {
            sandbox_id: id.clone(),
            path: "a/b/c".into(),
            parents: true,
            mode: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(made.mode, 0o755);
    code_and_says(
        files
            .make_dir(pb::MakeDirRequest {
                sandbox_id: id.clone(),
                path: "a/b/c".into(),
                parents: false,
                mode: 0,
            })
            .await,
        Code::AlreadyExists,
        "/workspace/a/b/c",
    );
    let mv = |source: &str, destination: &str, overwrite: bool| pb::MoveRequest {
        sandbox_id: id.clone(),
        source: source.into(),
        destination: destination.into(),
        overwrite,
    };
    code_and_says(
        files.r#move(mv("src/twice.rs", "src/main.rs", false)).await,
        Code::AlreadyExists,
        "/workspace/src/main.rs",
    );
    let moved = files
        .r#move(mv("src/twice.rs", "a/b/c/twice.rs", false))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(moved.path, "/workspace/a/b/c/twice.rs");
    let remove = |path: &str, recursive: bool| pb::RemoveRequest {
        sandbox_id: id.clone(),
        path: path.into(),
        recursive,
    };
    code_and_says(
        files.remove(remove("a", false)).await,
        Code::FailedPrecondition,
        "not empty",
    );
    files.remove(remove("a", true)).await.unwrap();
    code_and_says(files.stat(stat("a")).await, Code::NotFound, "/workspace/a");
    assert_eq!(
        server.shell(&id, "ls a 2>/dev/null || echo gone").await,
        "gone\n"
    );
}

async fn uploads_verify_and_downloads_stream(provider: Provider) {
    let (_server, id, mut files) = setup(provider).await;
    const SIZE: u64 = 8 << 20;
    let sha = pattern_sha256(SIZE);
    let header = |path: &str, sha256: &str| pb::UploadHeader {
        sandbox_id: id.clone(),
        path: path.into(),
        mode: 0o640,
        create_parents: true,
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
    let listed = files
        .list_dir(pb::ListDirRequest {
            sandbox_id: id.clone(),
            path: "data".into(),
            depth: 1,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["blob"], "no partial file is left");
    assert_eq!(download(&mut files, request).await.1, sha, "unchanged");
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

async fn bad_requests_get_clear_errors(provider: Provider) {
    let (server, id, mut files) = setup(provider).await;
    code_and_says(
        files
            .stat(pb::StatRequest {
                sandbox_id: id.clone(),
                path: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "path",
    );
    code_and_says(
        files
            .stat(pb::StatRequest {
                sandbox_id: "sbx_nope".into(),
                path: "x".into(),
            })
            .await,
        Code::InvalidArgument,
        "sandbox_id",
    );
    code_and_says(
        files
            .grep(pb::GrepRequest {
                sandbox_id: id.clone(),
                pattern: "(unclosed".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "pattern",
    );
    code_and_says(
        files
            .list_dir(pb::ListDirRequest {
                sandbox_id: id.clone(),
                path: ".".into(),
                depth: -1,
                limit: 0,
            })
            .await,
        Code::InvalidArgument,
        "depth",
    );
    code_and_says(
        upload(
            &mut files,
            pb::UploadHeader {
                sandbox_id: id.clone(),
                path: "x".into(),
                sha256: "not-hex".into(),
                ..Default::default()
            },
            std::iter::empty(),
        )
        .await,
        Code::InvalidArgument,
        "sha256",
    );
    // A chunk first instead of the header.
    let status = files
        .upload(tokio_stream::iter([pb::UploadRequest {
            request: Some(pb::upload_request::Request::Chunk(vec![1, 2, 3].into())),
        }]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    code_and_says(
        files
            .read_file(pb::ReadFileRequest {
                sandbox_id: id.clone(),
                path: "../../etc/passwd".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "leads out of the sandbox",
    );
    code_and_says(
        files
            .write_file(pb::WriteFileRequest {
                sandbox_id: id.clone(),
                path: "n".repeat(300),
                content: b"x".to_vec(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "too long",
    );
    // Moving a directory into itself.
    files
        .make_dir(pb::MakeDirRequest {
            sandbox_id: id.clone(),
            path: "outer".into(),
            parents: true,
            mode: 0,
        })
        .await
        .unwrap();
    code_and_says(
        files
            .r#move(pb::MoveRequest {
                sandbox_id: id.clone(),
                source: "outer".into(),
                destination: "outer/inner".into(),
                overwrite: false,
            })
            .await,
        Code::InvalidArgument,
        "/workspace/outer/inner",
    );
    // A stopped sandbox has no agent to ask.
    server
        .sandboxes()
        .await
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    code_and_says(
        files
            .stat(pb::StatRequest {
                sandbox_id: id.clone(),
                path: "x".into(),
            })
            .await,
        Code::FailedPrecondition,
        "RUNNING",
    );
}

on_every_provider!(
    small_operations_behave_as_documented,
    uploads_verify_and_downloads_stream,
    a_thousand_file_tree_round_trips_as_an_archive,
    bad_requests_get_clear_errors,
);

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
            create_parents: true,
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

    // A link swapped in mid-transfer: the directory an upload goes to
    // becomes a link to the host's /tmp while chunks are still coming.
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .shell(&id, "mv swap swap.old && ln -s /tmp swap")
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
    let outcome = uploading.await.unwrap();
    // Whatever the outcome, the file is not in the host's /tmp.
    assert!(!std::path::Path::new("/tmp/file").exists() || outcome.is_err());
    if let Ok(answer) = outcome {
        let path = answer.into_inner().info.unwrap().path;
        assert!(path.starts_with("/workspace/swap"), "{path}");
        assert!(
            !std::path::Path::new("/tmp/file").exists(),
            "the upload landed in the host's /tmp"
        );
    }
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
                let rss = rss_bytes(pid);
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

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
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

/// The file operations need nothing from the image: none runs a program.
#[tokio::test]
async fn files_work_in_an_image_with_no_shell() {
    if !common::docker::available() {
        return;
    }
    let server = TestServer::for_provider(Provider::Docker).await;
    let id = server
        .running_sandbox(pb::CreateSandboxRequest {
            image: common::docker::NO_SHELL.into(),
            ..Default::default()
        })
        .await
        .id;
    let mut files = files_client(server.channel().await);
    write(
        &mut files,
        &id,
        "app/main.py",
        b"print('hello')\nprint('bye')\n",
    )
    .await;
    let edited = files
        .edit_file(pb::EditFileRequest {
            sandbox_id: id.clone(),
            path: "app/main.py".into(),
            old_text: "bye".into(),
            new_text: "goodbye".into(),
            replace_all: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(edited.replacements, 1);
    let read = read(
        &mut files,
        pb::ReadFileRequest {
            sandbox_id: id.clone(),
            path: "/workspace/app/main.py".into(),
            offset: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(read.content, b"print('goodbye')\n");
    let found = files
        .find_files(pb::FindFilesRequest {
            sandbox_id: id.clone(),
            path: String::new(),
            pattern: "**/*.py".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.paths, ["/workspace/app/main.py"]);
    let grep = files
        .grep(pb::GrepRequest {
            sandbox_id: id.clone(),
            path: "/workspace".into(),
            pattern: "GOODBYE".into(),
            ignore_case: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grep.matches.len(), 1);
    assert_eq!(grep.matches[0].line_number, 2);
    let sha = pattern_sha256(3 << 20);
    let uploaded = upload(
        &mut files,
        pb::UploadHeader {
            sandbox_id: id.clone(),
            path: "/tmp/blob".into(),
            sha256: sha.clone(),
            ..Default::default()
        },
        pattern(3 << 20, 1 << 20),
    )
    .await
    .unwrap();
    assert_eq!(uploaded.sha256, sha);
    let (_, got, _) = download(
        &mut files,
        pb::DownloadRequest {
            sandbox_id: id.clone(),
            path: "/tmp/blob".into(),
            offset: 0,
            length: 0,
        },
    )
    .await;
    assert_eq!(got, sha);
    let listed = files
        .list_dir(pb::ListDirRequest {
            sandbox_id: id.clone(),
            path: "/bin".into(),
            depth: 1,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.entries.iter().any(|e| e.name == "cat"));
    assert!(!listed.entries.iter().any(|e| e.name == "sh"));
}
