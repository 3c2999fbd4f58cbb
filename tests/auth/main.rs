//! API keys, tenants, quotas, the rate limit and the audit trail, through
//! the real server and the `paddock keys` command.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod keys;
mod quotas;
mod rate_limit;
mod tenants;

use bytes::Bytes;
use common::{Store, TestServer};
use paddock::api::auth::AuthMode;
use paddock::config::{ServeArgs, ServerConfig};
use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use paddock::pb::file_service_client::FileServiceClient;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// The database `paddock keys` works on: a server's, given as the server
/// was (its data directory's SQLite file, or its database URL).
enum Database<'a> {
    DataDir(&'a Path),
    Url(&'a str),
}

impl<'a> From<&'a TestServer> for Database<'a> {
    fn from(server: &'a TestServer) -> Self {
        match &server.database_url {
            Some(url) => Self::Url(url),
            None => Self::DataDir(&server.data_dir),
        }
    }
}

impl<'a> From<&'a Path> for Database<'a> {
    fn from(data_dir: &'a Path) -> Self {
        Self::DataDir(data_dir)
    }
}

/// Runs `paddock keys ARGS` on `database`; returns stdout, or the stderr of
/// a failure.
fn keys<'a>(database: impl Into<Database<'a>>, args: &[&str]) -> Result<String, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paddock"));
    command.arg("keys").args(args);
    match database.into() {
        Database::DataDir(dir) => command.arg("--data-dir").arg(dir),
        Database::Url(url) => command.arg("--database-url").arg(url),
    };
    let output = command.output().expect("run paddock keys");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn make_key<'a>(database: impl Into<Database<'a>>, tenant: &str) -> String {
    let key = keys(
        database,
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

/// A server that needs API keys, on `store`; `None` when that store is not
/// set up outside CI.
async fn keyed_server(store: Store) -> Option<TestServer> {
    TestServer::on(store, |args: &mut ServeArgs| {
        args.auth = Some("keys".into())
    })
    .await
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
