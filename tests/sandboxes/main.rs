//! SandboxService through gRPC, as a user calls it, against the real
//! server: the service itself, a sandbox's lifecycle, lists, updates,
//! watches and the reaper, and what every provider does with a sandbox's
//! spec.

#[path = "../common/mod.rs"]
mod common;

mod lifecycle;
mod listing;
mod providers;
mod reaper;
mod service;
mod updates;
mod watch;

use common::{TestServer, eventually};
use futures::StreamExt;
use paddock::pb;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use prost::Message;
use std::collections::HashMap;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

type Client = SandboxServiceClient<Channel>;

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn create(client: &mut Client, request: pb::CreateSandboxRequest) -> pb::Sandbox {
    client
        .create_sandbox(request)
        .await
        .expect("create succeeds")
        .into_inner()
        .sandbox
        .expect("a sandbox")
}

async fn get(client: &mut Client, id: &str) -> pb::Sandbox {
    client
        .get_sandbox(pb::GetSandboxRequest {
            sandbox_id: id.to_owned(),
        })
        .await
        .expect("get succeeds")
        .into_inner()
        .sandbox
        .expect("a sandbox")
}

fn state(sandbox: &pb::Sandbox) -> pb::SandboxState {
    pb::SandboxState::try_from(sandbox.state).expect("known state")
}

/// Polls the sandbox until it is in `wanted`, for up to 10 s.
async fn wait_for_state(client: &Client, id: &str, wanted: pb::SandboxState) -> pb::Sandbox {
    eventually(
        Duration::from_secs(10),
        &format!("{id} to become {wanted:?}"),
        || {
            let mut client = client.clone();
            let id = id.to_owned();
            async move {
                let sandbox = get(&mut client, &id).await;
                (state(&sandbox) == wanted).then_some(sandbox)
            }
        },
    )
    .await
}

fn named(name: &str) -> pb::CreateSandboxRequest {
    pb::CreateSandboxRequest {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}
