//! Files in an image with no shell: the agent needs nothing from the image.

use super::*;

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
