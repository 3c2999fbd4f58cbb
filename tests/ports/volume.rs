//! 64 MiB from a sandbox's server through one forward of a spawned server,
//! whose memory is sampled all along: a forward holds a bounded amount,
//! whatever it carries.

use common::spawned::ServerProcess;
use sha2::{Digest, Sha256};

use super::*;

const SIZE: usize = 64 << 20;
const BLOB_PORT: u16 = 9000;

async fn sixty_four_mib_cross_one_forward(env: &[(&str, &str)]) {
    let temp = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn_with(temp.path(), env);
    let channel = server.channel().await;
    let id = server
        .client()
        .await
        .create_sandbox(pb::CreateSandboxRequest {
            network: pb::NetworkMode::None as i32,
            ..Default::default()
        })
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
    let mut exec = paddock::pb::exec_service_client::ExecServiceClient::new(channel.clone());
    let shell = |line: &str| pb::RunCommandRequest {
        sandbox_id: id.clone(),
        spec: Some(pb::CommandSpec {
            shell: line.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let made = exec
        .run_command(shell(&format!(
            "head -c {SIZE} /dev/urandom > /tmp/blob && sha256sum /tmp/blob"
        )))
        .await
        .unwrap()
        .into_inner();
    let expected = String::from_utf8_lossy(&made.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    exec.start_command(pb::StartCommandRequest {
        sandbox_id: id.clone(),
        spec: shell(&format!("exec busybox nc -l -p {BLOB_PORT} < /tmp/blob")).spec,
    })
    .await
    .unwrap();

    let pid = server.pid();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(
                    common::spawned::rss_bytes(pid),
                    std::sync::atomic::Ordering::Relaxed,
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let baseline = common::spawned::rss_bytes(pid);
    let mut responses = eventually(Duration::from_secs(20), "nc listens", || async {
        let (requests, outgoing) = mpsc::channel(1);
        requests
            .send(message(Up::Start(pb::PortForwardStart {
                sandbox_id: id.clone(),
                port: u32::from(BLOB_PORT),
                address: String::new(),
            })))
            .await
            .unwrap();
        // The request side stays open (nc would stop at its end of file).
        std::mem::forget(requests);
        PortServiceClient::new(channel.clone())
            .port_forward(ReceiverStream::new(outgoing))
            .await
            .ok()
            .map(tonic::Response::into_inner)
    })
    .await;
    let mut hasher = Sha256::new();
    let mut received = 0;
    while received < SIZE {
        let message = tokio::time::timeout(Duration::from_secs(60), responses.message())
            .await
            .expect("bytes keep coming")
            .unwrap()
            .expect("the forward goes on until all is sent");
        if let Some(Down::Data(data)) = message.response {
            received += data.len();
            hasher.update(&data);
            // A slow reader: the server must hold back, not buffer.
            if received % (8 << 20) < data.len() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    sampling.abort();
    assert_eq!(received, SIZE);
    assert_eq!(paddock::ids::hex(&hasher.finalize()), expected);
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "server RSS {} MiB before, peak {} MiB while forwarding 64 MiB",
        baseline >> 20,
        peak >> 20
    );
    assert!(
        peak < baseline + (24 << 20),
        "server RSS grew from {} to {} MiB",
        baseline >> 20,
        peak >> 20
    );
}

#[tokio::test]
async fn sixty_four_mib_cross_a_process_sandbox_forward_with_the_server_memory_flat() {
    sixty_four_mib_cross_one_forward(&[]).await;
}

#[tokio::test]
async fn sixty_four_mib_cross_a_docker_sandbox_forward_with_the_server_memory_flat() {
    if !common::docker::available() {
        return;
    }
    let agent = common::docker::agent_binary();
    sixty_four_mib_cross_one_forward(&[
        ("PADDOCK_PROVIDER", "docker"),
        ("PADDOCK_DOCKER_DEFAULT_IMAGE", common::docker::BUSYBOX),
        ("PADDOCK_DOCKER_AGENT_BINARY", agent.to_str().unwrap()),
    ])
    .await;
}
