//! The Docker provider against the real engine: containers, engine
//! events, image pulls, a remote engine over mutual TLS, templates built
//! and captured, engine volumes that are no tenant's, requests
//! the engine would refuse, and a server killed mid-create.

#[path = "../common/mod.rs"]
mod common;

mod containers;
mod crash;
mod events;
mod images;
mod remote;
mod templates;
mod warm_pools;

use common::docker::{self, BUSYBOX, containers_of, docker_output};
use common::spawned::ServerProcess;
use common::{TestServer, eventually};
use paddock::pb;
use paddock::pb::exec_service_client::ExecServiceClient;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use paddock::store::Store;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

async fn docker_server() -> Option<TestServer> {
    if !docker::available() {
        return None;
    }
    Some(TestServer::for_provider(common::Provider::Docker).await)
}

async fn run(
    exec: &mut ExecServiceClient<Channel>,
    sandbox_id: &str,
    command: &[&str],
) -> pb::RunCommandResponse {
    exec.run_command(pb::RunCommandRequest {
        sandbox_id: sandbox_id.to_owned(),
        spec: Some(pb::CommandSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}

fn inspect(container: &str, format: &str) -> String {
    docker_output(&["inspect", "--format", format, container])
}

async fn wait_for_state(
    sandboxes: &mut SandboxServiceClient<Channel>,
    id: &str,
    state: pb::SandboxState,
) -> pb::Sandbox {
    eventually(
        Duration::from_secs(15),
        "the record to follow the engine",
        || {
            let mut sandboxes = sandboxes.clone();
            let id = id.to_owned();
            async move {
                let sandbox = sandboxes
                    .get_sandbox(pb::GetSandboxRequest { sandbox_id: id })
                    .await
                    .ok()?
                    .into_inner()
                    .sandbox?;
                (sandbox.state == state as i32).then_some(sandbox)
            }
        },
    )
    .await
}
