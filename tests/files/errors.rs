//! Bad requests get an error that names what is wrong.

use super::*;

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

on_every_provider!(bad_requests_get_clear_errors,);
