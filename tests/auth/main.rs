//! API keys, tenants, quotas, the rate limit and the audit trail, through
//! the real server and the `paddock keys` command.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod bootstrap;
mod keys;
mod quotas;
mod rate_limit;
mod revocation;
mod tenants;

use bytes::Bytes;
use common::api_keys::{Authed, keys, make_key, with_header};
use common::{Store, TestServer};
use paddock::api::auth::AuthMode;
use paddock::config::{ServeArgs, ServerConfig};
use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use paddock::pb::file_service_client::FileServiceClient;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use std::time::Duration;
use tonic::{Code, Status};

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
