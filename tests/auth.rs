//! API keys and tenants, end to end: keys made, listed and revoked with the
//! real `paddock keys` command against the server's database; calls without
//! a valid key refused; one tenant unable to see or touch another's sandboxes
//! through any RPC; and a server without authentication only on loopback.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::TestServer;
use paddock::api::auth::AuthMode;
use paddock::config::{ServeArgs, ServerConfig};
use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use paddock::pb::file_service_client::FileServiceClient;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// Runs `paddock keys ARGS --data-dir DIR`; returns stdout, or the stderr of
/// a failure.
fn keys(data_dir: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run paddock keys");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn make_key(data_dir: &Path, tenant: &str) -> String {
    let key = keys(
        data_dir,
        &["create", "--tenant", tenant, "--description", "test"],
    )
    .expect("keys create")
    .trim()
    .to_owned();
    assert!(key.starts_with("pdk_") && key.len() == 68, "{key}");
    key
}

/// Adds `authorization` (when there is one) to every call, as sent.
#[derive(Clone)]
struct Authorization(Option<String>);

impl tonic::service::Interceptor for Authorization {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", header.parse().unwrap());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Authorization>;

fn with_header(channel: Channel, header: Option<String>) -> Authed {
    InterceptedService::new(channel, Authorization(header))
}

struct Clients {
    sandboxes: SandboxServiceClient<Authed>,
    exec: ExecServiceClient<Authed>,
    files: FileServiceClient<Authed>,
}

async fn clients(server: &TestServer, key: Option<&str>) -> Clients {
    let header = key.map(|key| format!("Bearer {key}"));
    let channel = server.channel().await;
    Clients {
        sandboxes: SandboxServiceClient::new(with_header(channel.clone(), header.clone())),
        exec: ExecServiceClient::new(with_header(channel.clone(), header.clone())),
        files: FileServiceClient::new(with_header(channel, header)),
    }
}

async fn keyed_server() -> TestServer {
    TestServer::start_with(|args: &mut ServeArgs| args.auth = Some("keys".into())).await
}

/// Asks reflection (v1) to list the services, without an API key.
async fn list_services(
    server: &TestServer,
) -> Result<
    tonic::Response<tonic::Streaming<tonic_reflection::pb::v1::ServerReflectionResponse>>,
    Status,
> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    ServerReflectionClient::new(server.channel().await)
        .server_reflection_info(futures::stream::iter([request]))
        .await
}

/// Like [`assert_code`], and the message says `needle`.
fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    what: &str,
    needle: &str,
) {
    let status = assert_code(result, code, what);
    assert!(
        status.message().contains(needle),
        "{what}: {}",
        status.message()
    );
}

fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, what: &str) -> Status {
    let status = result.expect_err(what);
    assert_eq!(status.code(), code, "{what}: {}", status.message());
    status
}

#[tokio::test]
async fn calls_need_a_valid_unrevoked_key() {
    let server = keyed_server().await;
    let key = make_key(&server.data_dir, "team-a");

    let list = || pb::ListSandboxesRequest::default();
    let mut anonymous = clients(&server, None).await;
    assert_refused(
        anonymous.sandboxes.list_sandboxes(list()).await,
        Code::Unauthenticated,
        "no key",
        "authorization: Bearer",
    );
    for header in [
        "pdk_nope".to_owned(),
        format!("Basic {key}"),
        format!("Bearer {}", key.replace("pdk_", "pdx_")),
    ] {
        let mut odd =
            SandboxServiceClient::new(with_header(server.channel().await, Some(header.clone())));
        assert_code(
            odd.list_sandboxes(list()).await,
            Code::Unauthenticated,
            &header,
        );
    }
    let unknown = format!("pdk_{}", "0".repeat(64));
    let refused = assert_code(
        clients(&server, Some(&unknown))
            .await
            .sandboxes
            .list_sandboxes(list())
            .await,
        Code::Unauthenticated,
        "unknown key",
    );
    assert_eq!(refused.message(), "the API key is not valid");

    let mut team_a = clients(&server, Some(&key)).await;
    team_a
        .sandboxes
        .list_sandboxes(list())
        .await
        .expect("a valid key works");
    // Health answers anyone; reflection needs a key unless opened.
    let health = server
        .health()
        .await
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without a key")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    assert_code(
        list_services(&server).await,
        Code::Unauthenticated,
        "reflection without a key",
    );

    // The database keeps the hash only; listing shows ids, never keys.
    let database = std::fs::read(server.data_dir.join("paddock.db")).unwrap_or_default();
    let wal = std::fs::read(server.data_dir.join("paddock.db-wal")).unwrap_or_default();
    let secret = key.as_bytes();
    for bytes in [&database, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "the key is stored in clear"
        );
    }
    let listed = keys(&server.data_dir, &["list"]).unwrap();
    assert!(
        listed.contains("team-a") && !listed.contains(&key),
        "{listed}"
    );
    let id = listed
        .lines()
        .find_map(|line| line.split_whitespace().find(|w| w.starts_with("key_")))
        .expect("a key id")
        .to_owned();

    keys(&server.data_dir, &["revoke", &id]).unwrap();
    // A server trusts a key it checked for up to a second.
    let revoked_at = std::time::Instant::now();
    let refused = common::eventually(Duration::from_secs(5), "the revocation", || {
        let mut sandboxes = team_a.sandboxes.clone();
        async move { sandboxes.list_sandboxes(list()).await.err() }
    })
    .await;
    assert!(
        revoked_at.elapsed() < paddock::api::auth::KEY_CACHE_TTL + Duration::from_millis(500),
        "a revoked key is refused within the key cache's time"
    );
    assert_eq!(
        refused.code(),
        Code::Unauthenticated,
        "{}",
        refused.message()
    );
    assert_eq!(refused.message(), "the API key was revoked");
    assert!(keys(&server.data_dir, &["list"]).unwrap().contains(&id));
    let error = keys(&server.data_dir, &["revoke", "key_0000000000000000"]).unwrap_err();
    assert!(error.contains("there is no key"), "{error}");
    let error = keys(&server.data_dir, &["create", "--tenant", "bad tenant"]).unwrap_err();
    assert!(error.contains("not a tenant name"), "{error}");
}

#[tokio::test]
async fn reflection_can_be_opened_to_callers_without_a_key() {
    let server = TestServer::start_with(|args: &mut ServeArgs| {
        args.auth = Some("keys".into());
        args.open_reflection = Some(true);
    })
    .await;
    let mut answers = list_services(&server)
        .await
        .expect("open reflection")
        .into_inner();
    assert!(answers.message().await.unwrap().is_some());
    let mut anonymous = clients(&server, None).await;
    assert_code(
        anonymous
            .sandboxes
            .list_sandboxes(pb::ListSandboxesRequest::default())
            .await,
        Code::Unauthenticated,
        "the API still needs a key",
    );
}

#[tokio::test]
async fn a_tenant_cannot_see_or_touch_another_tenants_sandboxes() {
    let server = keyed_server().await;
    let mut a = clients(&server, Some(&make_key(&server.data_dir, "team-a"))).await;
    let mut b = clients(&server, Some(&make_key(&server.data_dir, "team-b"))).await;

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

    // Every RPC that names the sandbox answers B as if it did not exist.
    let not_found = |result: Result<(), Status>, what: &str| {
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
    };
    macro_rules! try_as_b {
        ($client:expr, $method:ident, $request:expr) => {
            not_found(
                $client.$method($request).await.map(drop),
                stringify!($method),
            )
        };
    }
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
    try_as_b!(
        b.exec,
        run_command,
        pb::RunCommandRequest {
            sandbox_id: sid(),
            command: vec!["cat".into(), "secret.txt".into()],
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
    assert_ne!(theirs.id, id);
    let first = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("B sees its own sandbox's event")
        .unwrap()
        .unwrap();
    assert_eq!(first.sandbox.unwrap().id, theirs.id, "only B's own events");

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
    a.sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest { sandbox_id: sid() })
        .await
        .unwrap();
    b.sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: theirs.id,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn without_authentication_only_loopback_and_unix_sockets_are_served() {
    let data = tempfile::tempdir().unwrap();
    let args = |listen: &str, auth: Option<&str>| ServeArgs {
        listen: Some(listen.into()),
        data_dir: Some(data.path().to_path_buf()),
        auth: auth.map(Into::into),
        agent_binary: Some(env!("CARGO_BIN_EXE_paddock").into()),
        provider: Some("process".into()),
        ..ServeArgs::default()
    };
    let config = ServerConfig::resolve(args("0.0.0.0:0", Some("none"))).unwrap();
    let refused = paddock::server::Server::start(config)
        .await
        .err()
        .expect("no open server on every interface");
    let message = format!("{refused:#}");
    assert!(
        message.contains("refusing to listen on 0.0.0.0:0 without authentication")
            && message.contains("--auth keys"),
        "{message}"
    );
    // Unless told, a server reachable from elsewhere requires keys, and one
    // on loopback or a Unix socket does not.
    assert_eq!(
        ServerConfig::resolve(args("0.0.0.0:0", None)).unwrap().auth,
        AuthMode::Keys
    );
    assert_eq!(
        ServerConfig::resolve(args("127.0.0.1:0", None))
            .unwrap()
            .auth,
        AuthMode::None
    );
    let socket = data.path().join("api.sock");
    let config =
        ServerConfig::resolve(args(&format!("unix:{}", socket.display()), Some("none"))).unwrap();
    assert_eq!(config.auth, AuthMode::None);
    paddock::server::Server::start(config)
        .await
        .expect("a Unix socket may be open");
}

/// A keyed server with quotas from a configuration file: every tenant may
/// run 2 sandboxes and 1 command, with sandboxes of at most 64 MiB; tenant
/// `big` may run 3 sandboxes.
async fn server_with_quotas() -> TestServer {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "auth = \"keys\"\n\
         quota_running_sandboxes = 2\n\
         quota_commands = 1\n\
         quota_max_memory = \"64MiB\"\n\
         [tenant_quotas.big]\n\
         quota_running_sandboxes = 3\n",
    )
    .unwrap();
    let path = config.path().to_path_buf();
    let server = TestServer::start_with(|args: &mut ServeArgs| args.config = Some(path)).await;
    drop(config);
    server
}

async fn create(clients: &mut Clients) -> Result<pb::Sandbox, Status> {
    Ok(clients
        .sandboxes
        .create_sandbox(pb::CreateSandboxRequest::default())
        .await?
        .into_inner()
        .sandbox
        .unwrap())
}

#[tokio::test]
async fn quotas_refuse_what_is_over_them_and_name_the_quota() {
    let server = server_with_quotas().await;
    let mut small = clients(&server, Some(&make_key(&server.data_dir, "small"))).await;
    let mut big = clients(&server, Some(&make_key(&server.data_dir, "big"))).await;

    let first = create(&mut small).await.unwrap();
    create(&mut small).await.unwrap();
    assert_refused(
        create(&mut small).await,
        Code::ResourceExhausted,
        "a third sandbox",
        "running_sandboxes (2)",
    );
    let listed = small
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sandboxes.len(), 2, "a refused create leaves nothing");
    for _ in 0..3 {
        create(&mut big).await.expect("big's own quota is 3");
    }
    assert_code(
        create(&mut big).await,
        Code::ResourceExhausted,
        "big's fourth",
    );

    // A stopped sandbox does not count, and starting it again does.
    small
        .sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: first.id.clone(),
        })
        .await
        .unwrap();
    create(&mut small).await.expect("room after a stop");
    assert_code(
        small
            .sandboxes
            .start_sandbox(pb::StartSandboxRequest {
                sandbox_id: first.id.clone(),
            })
            .await,
        Code::ResourceExhausted,
        "starting a third",
    );

    assert_refused(
        small
            .sandboxes
            .create_sandbox(pb::CreateSandboxRequest {
                resources: Some(pb::Resources {
                    memory_bytes: 128 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        "128 MiB",
        "max_memory_bytes",
    );

    // One command at a time for each tenant: an open Exec holds the place.
    let running = big
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandboxes[0]
        .id
        .clone();
    let (hold, held) = tokio::sync::mpsc::channel(1);
    hold.send(pb::ExecRequest {
        request: Some(pb::exec_request::Request::Start(pb::ExecStart {
            sandbox_id: running.clone(),
            spec: Some(pb::CommandSpec {
                command: vec!["cat".into()],
                ..Default::default()
            }),
            on_disconnect: 0,
        })),
    })
    .await
    .unwrap();
    let mut open = big
        .exec
        .exec(tokio_stream::wrappers::ReceiverStream::new(held))
        .await
        .unwrap()
        .into_inner();
    open.message().await.unwrap().expect("started");
    let run = pb::RunCommandRequest {
        sandbox_id: running.clone(),
        command: vec!["true".into()],
        ..Default::default()
    };
    assert_refused(
        big.exec.run_command(run.clone()).await,
        Code::ResourceExhausted,
        "a second command",
        "quota commands",
    );
    hold.send(pb::ExecRequest {
        request: Some(pb::exec_request::Request::CloseStdin(pb::CloseStdin {})),
    })
    .await
    .unwrap();
    while open.message().await.unwrap().is_some() {}
    drop(hold);
    drop(open);
    common::eventually(Duration::from_secs(5), "the place is free again", || {
        let mut exec = big.exec.clone();
        let run = run.clone();
        async move { exec.run_command(run).await.ok() }
    })
    .await;
}

#[tokio::test]
async fn each_key_is_held_to_its_rate_limit_alone() {
    let server = TestServer::start_with(|args: &mut ServeArgs| {
        args.auth = Some("keys".into());
        args.key_rate_limit = Some(5);
    })
    .await;
    let busy = make_key(&server.data_dir, "alpha");
    let quiet = make_key(&server.data_dir, "beta");
    let mut busy_clients = clients(&server, Some(&busy)).await;
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        outcomes.push(
            busy_clients
                .sandboxes
                .list_sandboxes(pb::ListSandboxesRequest::default())
                .await,
        );
    }
    let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
    assert!(
        (5..20).contains(&admitted),
        "a burst of 20 at 5/s admits the first 5 (and what refills meanwhile): {admitted}"
    );
    let refused = outcomes.into_iter().find(Result::is_err).unwrap();
    assert_refused(
        refused,
        Code::ResourceExhausted,
        "over the rate limit",
        "rate limit of 5 calls per second",
    );

    // Another key of the server is not held up by the first one's burst.
    clients(&server, Some(&quiet))
        .await
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("another key is under its own limit");
    // And the first key is admitted again once its second has passed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    busy_clients
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("the key is admitted again after a quiet second");
}

#[tokio::test]
async fn the_audit_trail_says_who_did_what_and_no_log_holds_a_secret() {
    let data = tempfile::tempdir().unwrap();
    let alice = make_key(data.path(), "alice");
    let mallory = make_key(data.path(), "mallory");
    let server = common::spawned::ServerProcess::spawn_with(
        data.path(),
        &[
            ("PADDOCK_AUTH", "keys"),
            // The audit trail is kept whatever the filter; `serving` tells the harness the port.
            ("PADDOCK_LOG", "warn,paddock::server=info"),
        ],
    );
    let channel = server.channel().await;
    let header = |key: &str| Some(format!("Bearer {key}"));
    let mut sandboxes = SandboxServiceClient::new(with_header(channel.clone(), header(&alice)));
    let mut exec = ExecServiceClient::new(with_header(channel.clone(), header(&alice)));
    let mut files = FileServiceClient::new(with_header(channel.clone(), header(&alice)));
    let mut intruder = SandboxServiceClient::new(with_header(channel, header(&mallory)));

    const SECRET: &str = "hunter2-secret-value";
    let sandbox = sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            env: [("DB_PASSWORD".to_owned(), SECRET.to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert!(
        !format!("{sandbox:?}").contains(SECRET),
        "a sandbox shows its env keys, never their values"
    );
    let ran = exec
        .run_command(pb::RunCommandRequest {
            sandbox_id: sandbox.id.clone(),
            shell: "test ${#DB_PASSWORD}${#API_TOKEN} = 2010".into(),
            env: [("API_TOKEN".to_owned(), "tok-987654".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ran.exit_code, Some(0), "the command saw both values");
    let started = exec
        .start_command(pb::StartCommandRequest {
            sandbox_id: sandbox.id.clone(),
            spec: Some(pb::CommandSpec {
                command: vec!["true".into()],
                env: [("SERVICE_TOKEN".to_owned(), SECRET.to_owned())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    let got = exec
        .get_command(pb::GetCommandRequest {
            sandbox_id: sandbox.id.clone(),
            command_id: started.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let listed = exec
        .list_commands(pb::ListCommandsRequest {
            sandbox_id: sandbox.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for answer in [
        format!("{started:?}"),
        format!("{got:?}"),
        format!("{listed:?}"),
    ] {
        assert!(answer.contains("SERVICE_TOKEN"), "the env keys are shown");
        assert!(
            !answer.contains(SECRET),
            "a command's env value returned: {answer}"
        );
    }
    files
        .write_file(pb::WriteFileRequest {
            sandbox_id: sandbox.id.clone(),
            path: "notes.txt".into(),
            content: SECRET.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_code(
        intruder
            .delete_sandbox(pb::DeleteSandboxRequest {
                sandbox_id: sandbox.id.clone(),
            })
            .await,
        Code::NotFound,
        "another tenant's delete",
    );
    sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();

    let key_id = |key: &str| {
        keys(data.path(), &["list"])
            .unwrap()
            .lines()
            .find(|line| line.contains(key))
            .map(|line| line.split_whitespace().next().unwrap().to_owned())
    };
    let (alice_id, mallory_id) = (key_id("alice").unwrap(), key_id("mallory").unwrap());
    let wanted = [
        ("alice", &alice_id, "create", "", "ok"),
        (
            "alice",
            &alice_id,
            "run",
            "sh -c test ${#DB_PASSWORD}${#API_TOKEN} = 2010",
            "ok",
        ),
        ("alice", &alice_id, "start command", "true", "ok"),
        ("alice", &alice_id, "write file", "notes.txt", "ok"),
        ("mallory", &mallory_id, "delete", "", "NOT_FOUND"),
        ("alice", &alice_id, "delete", "", "ok"),
    ];
    let trail = common::eventually(Duration::from_secs(10), "the audit trail", || {
        let lines = server.log_lines();
        async move {
            let trail: Vec<serde_json::Value> = lines
                .into_iter()
                .filter(|line| line["target"] == "audit")
                .collect();
            (trail.len() >= wanted.len()).then_some(trail)
        }
    })
    .await;
    assert_eq!(trail.len(), wanted.len(), "one event per call: {trail:#?}");
    for (event, (tenant, key_id, action, detail, outcome)) in trail.iter().zip(wanted) {
        assert_eq!(event["tenant"], tenant, "{event}");
        assert_eq!(&event["key_id"], key_id.as_str(), "{event}");
        assert_eq!(event["action"], action, "{event}");
        assert_eq!(event["sandbox_id"], sandbox.id.as_str(), "{event}");
        if !detail.is_empty() {
            assert_eq!(event["detail"], detail, "{event}");
        }
        assert_eq!(event["outcome"], outcome, "{event}");
    }

    // Only the command line is the caller's own text; nothing else of theirs
    // is logged: no env value, no file content, no key.
    for line in server.log_lines() {
        let text = line.to_string();
        assert!(!text.contains(SECRET), "a secret in the log: {text}");
        assert!(
            !text.contains(&alice) && !text.contains(&mallory),
            "a key in the log: {text}"
        );
        assert!(
            !text.contains("tok-987654"),
            "an env value in the log: {text}"
        );
    }
}
