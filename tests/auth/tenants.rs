//! A tenant sees and touches only its own sandboxes: another's are
//! NOT_FOUND on every RPC, and listings and watches hold only its own.

use super::*;

/// Tenant A's sandbox (named `shared-name`, holding `secret.txt` and
/// running a command), and clients acting for A and for B.
struct Tenants {
    _server: TestServer,
    a: Clients,
    b: Clients,
    id: String,
    command: String,
}

async fn two_tenants(store: Store) -> Option<Tenants> {
    let server = keyed_server(store).await?;
    let mut a = clients(&server, Some(&make_key(&server, "team-a"))).await;
    let b = clients(&server, Some(&make_key(&server, "team-b"))).await;

    let sandbox = a
        .sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            name: Some("shared-name".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(sandbox.state, pb::SandboxState::Running as i32);
    let id = sandbox.id.clone();
    a.files
        .write_file(pb::WriteFileRequest {
            sandbox_id: id.clone(),
            path: "secret.txt".into(),
            content: b"team a only".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let command = a
        .exec
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(pb::CommandSpec {
                command: vec!["sleep".into(), "60".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap()
        .id;
    Some(Tenants {
        _server: server,
        a,
        b,
        id,
        command,
    })
}

/// B's call to A's sandbox ended NOT_FOUND, saying nothing of A.
fn not_found(result: Result<(), Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(
        status.code(),
        Code::NotFound,
        "{what}: {}",
        status.message()
    );
    assert!(
        !status.message().contains("team-a"),
        "{what}: {}",
        status.message()
    );
}

/// Calls `$method` on B's `$client` and requires [`not_found`].
macro_rules! try_as_b {
    ($client:expr, $method:ident, $request:expr) => {
        not_found(
            $client.$method($request).await.map(drop),
            stringify!($method),
        )
    };
}

/// A's sandbox, file and command are untouched.
async fn assert_untouched(tenants: &mut Tenants) {
    let Tenants { a, id, command, .. } = tenants;
    let sid = || id.clone();
    let path = || "secret.txt".to_owned();
    let command = command.clone();
    // A's sandbox, file and command are untouched.
    let still = a
        .sandboxes
        .get_sandbox(pb::GetSandboxRequest { sandbox_id: sid() })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(still.state, pb::SandboxState::Running as i32);
    assert!(still.labels.is_empty());
    let content = a
        .files
        .read_file(pb::ReadFileRequest {
            sandbox_id: sid(),
            path: path(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .content;
    assert_eq!(content, b"team a only");
    let running = a
        .exec
        .get_command(pb::GetCommandRequest {
            sandbox_id: sid(),
            command_id: command,
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    assert_eq!(running.state, pb::CommandState::Running as i32);
}

/// Every SandboxService call that names the sandbox answers B as if it did
/// not exist (as do the ExecService and FileService calls below).
async fn sandbox_calls_to_another_tenants_sandbox_are_not_found(store: Store) {
    let Some(mut tenants) = two_tenants(store).await else {
        return;
    };
    let Tenants { b, id, .. } = &mut tenants;
    let sid = || id.clone();
    try_as_b!(
        b.sandboxes,
        get_sandbox,
        pb::GetSandboxRequest { sandbox_id: sid() }
    );
    try_as_b!(
        b.sandboxes,
        update_sandbox,
        pb::UpdateSandboxRequest {
            sandbox_id: sid(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels".into()],
            }),
            labels: [("owner".to_owned(), "b".to_owned())].into(),
            ..Default::default()
        }
    );
    try_as_b!(
        b.sandboxes,
        stop_sandbox,
        pb::StopSandboxRequest { sandbox_id: sid() }
    );
    try_as_b!(
        b.sandboxes,
        start_sandbox,
        pb::StartSandboxRequest { sandbox_id: sid() }
    );
    try_as_b!(
        b.sandboxes,
        delete_sandbox,
        pb::DeleteSandboxRequest { sandbox_id: sid() }
    );
    assert_untouched(&mut tenants).await;
}

async fn exec_calls_to_another_tenants_sandbox_are_not_found(store: Store) {
    let Some(mut tenants) = two_tenants(store).await else {
        return;
    };
    let Tenants { b, id, command, .. } = &mut tenants;
    let sid = || id.clone();
    let command = command.clone();
    try_as_b!(
        b.exec,
        run_command,
        pb::RunCommandRequest {
            sandbox_id: sid(),
            spec: Some(pb::CommandSpec {
                command: vec!["cat".into(), "secret.txt".into()],
                ..Default::default()
            }),
            ..Default::default()
        }
    );
    try_as_b!(
        b.exec,
        start_command,
        pb::StartCommandRequest {
            sandbox_id: sid(),
            spec: Some(pb::CommandSpec {
                command: vec!["true".into()],
                ..Default::default()
            }),
        }
    );
    try_as_b!(
        b.exec,
        get_command,
        pb::GetCommandRequest {
            sandbox_id: sid(),
            command_id: command.clone(),
        }
    );
    try_as_b!(
        b.exec,
        list_commands,
        pb::ListCommandsRequest {
            sandbox_id: sid(),
            ..Default::default()
        }
    );
    try_as_b!(
        b.exec,
        signal_command,
        pb::SignalCommandRequest {
            sandbox_id: sid(),
            command_id: command.clone(),
            signal: "KILL".into(),
        }
    );
    try_as_b!(
        b.exec,
        kill_processes,
        pb::KillProcessesRequest {
            sandbox_id: sid(),
            ..Default::default()
        }
    );
    let start = pb::ExecRequest {
        request: Some(pb::exec_request::Request::Start(pb::ExecStart {
            sandbox_id: sid(),
            spec: Some(pb::CommandSpec {
                command: vec!["true".into()],
                ..Default::default()
            }),
            on_disconnect: 0,
        })),
    };
    not_found(
        match b.exec.exec(futures::stream::iter([start])).await {
            Ok(mut answers) => answers.get_mut().message().await.map(drop),
            Err(status) => Err(status),
        },
        "exec",
    );
    assert_untouched(&mut tenants).await;
}

async fn file_calls_to_another_tenants_sandbox_are_not_found(store: Store) {
    let Some(mut tenants) = two_tenants(store).await else {
        return;
    };
    let Tenants { b, id, .. } = &mut tenants;
    let sid = || id.clone();
    let path = || "secret.txt".to_owned();
    try_as_b!(
        b.files,
        stat,
        pb::StatRequest {
            sandbox_id: sid(),
            path: path()
        }
    );
    try_as_b!(
        b.files,
        read_file,
        pb::ReadFileRequest {
            sandbox_id: sid(),
            path: path(),
            ..Default::default()
        }
    );
    try_as_b!(
        b.files,
        write_file,
        pb::WriteFileRequest {
            sandbox_id: sid(),
            path: path(),
            content: b"overwritten by b".to_vec(),
            overwrite: true,
            ..Default::default()
        }
    );
    try_as_b!(
        b.files,
        edit_file,
        pb::EditFileRequest {
            sandbox_id: sid(),
            path: path(),
            old_text: "team".into(),
            new_text: "b".into(),
            ..Default::default()
        }
    );
    try_as_b!(
        b.files,
        list_dir,
        pb::ListDirRequest {
            sandbox_id: sid(),
            path: ".".into(),
            ..Default::default()
        }
    );
    try_as_b!(
        b.files,
        make_dir,
        pb::MakeDirRequest {
            sandbox_id: sid(),
            path: "b-was-here".into(),
            ..Default::default()
        }
    );
    try_as_b!(
        b.files,
        remove,
        pb::RemoveRequest {
            sandbox_id: sid(),
            path: path(),
            ..Default::default()
        }
    );
    try_as_b!(
        b.files,
        r#move,
        pb::MoveRequest {
            sandbox_id: sid(),
            source: path(),
            destination: "moved.txt".into(),
            ..Default::default()
        }
    );
    try_as_b!(
        b.files,
        find_files,
        pb::FindFilesRequest {
            sandbox_id: sid(),
            pattern: "*".into(),
            ..Default::default()
        }
    );
    try_as_b!(
        b.files,
        grep,
        pb::GrepRequest {
            sandbox_id: sid(),
            pattern: "team".into(),
            ..Default::default()
        }
    );
    not_found(
        match b
            .files
            .download(pb::DownloadRequest {
                sandbox_id: sid(),
                path: path(),
                ..Default::default()
            })
            .await
        {
            Ok(mut answers) => answers.get_mut().message().await.map(drop),
            Err(status) => Err(status),
        },
        "download",
    );
    not_found(
        match b
            .files
            .download_archive(pb::DownloadArchiveRequest {
                sandbox_id: sid(),
                path: ".".into(),
                ..Default::default()
            })
            .await
        {
            Ok(mut answers) => answers.get_mut().message().await.map(drop),
            Err(status) => Err(status),
        },
        "download_archive",
    );
    let upload = [
        pb::UploadRequest {
            request: Some(pb::upload_request::Request::Header(pb::UploadHeader {
                sandbox_id: sid(),
                path: "from-b.txt".into(),
                ..Default::default()
            })),
        },
        pb::UploadRequest {
            request: Some(pb::upload_request::Request::Chunk(Bytes::from_static(b"b"))),
        },
    ];
    try_as_b!(b.files, upload, futures::stream::iter(upload));
    let upload_archive = [pb::UploadArchiveRequest {
        request: Some(pb::upload_archive_request::Request::Header(
            pb::UploadArchiveHeader {
                sandbox_id: sid(),
                path: ".".into(),
                ..Default::default()
            },
        )),
    }];
    try_as_b!(
        b.files,
        upload_archive,
        futures::stream::iter(upload_archive)
    );
    assert_untouched(&mut tenants).await;
}

async fn listings_and_watches_hold_only_the_tenants_own(store: Store) {
    let Some(mut tenants) = two_tenants(store).await else {
        return;
    };
    let Tenants { b, id, .. } = &mut tenants;
    let sid = || id.clone();
    // B's listings and watches hold nothing of A's; B may use the same name.
    // B's listings and watches hold nothing of A's; B may use the same name.
    let listed = b
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sandboxes.is_empty(), "{listed:?}");
    try_as_b!(
        b.sandboxes,
        watch_sandboxes,
        pb::WatchSandboxesRequest {
            sandbox_id: sid(),
            ..Default::default()
        }
    );
    let mut watch = b
        .sandboxes
        .watch_sandboxes(pb::WatchSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let theirs = b
        .sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            name: Some("shared-name".into()),
            ..Default::default()
        })
        .await
        .expect("names are per tenant")
        .into_inner()
        .sandbox
        .unwrap();
    assert_ne!(&theirs.id, id);
    let first = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("B sees its own sandbox's event")
        .unwrap()
        .unwrap();
    assert_eq!(first.sandbox.unwrap().id, theirs.id, "only B's own events");
    assert_untouched(&mut tenants).await;
}

on_every_store!(
    sandbox_calls_to_another_tenants_sandbox_are_not_found,
    exec_calls_to_another_tenants_sandbox_are_not_found,
    file_calls_to_another_tenants_sandbox_are_not_found,
    listings_and_watches_hold_only_the_tenants_own,
);
