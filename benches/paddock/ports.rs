//! Reaching a server inside a Docker sandbox: through `PortForward` and
//! through the preview proxy, next to the floor of the same server in a
//! container whose port is published (`docker run -p`) on the same engine
//! and image, reached at 127.0.0.1.
//!
//! Both run busybox: `nc` handing out a blob per connection (a raw TCP
//! transfer, for PortForward) and `httpd` (an HTTP request, for the proxy).
//! Every sample is a new connection, as busybox closes each one.

use std::net::SocketAddr;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::CreateContainerOptions;
use bytes::Bytes;
use paddock::pb;
use paddock::pb::port_forward_request::Request as Up;
use paddock::pb::port_forward_response::Response as Down;
use paddock::pb::port_service_client::PortServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::engine::{IMAGE, remove};
use crate::ops::Clients;
use crate::report::{Goal, Measured, Row, Stats};
use crate::server::ServerProcess;
use crate::{Plan, no_pause, side_by_side};

const SECTION: &str = "Sandbox ports on Docker (the floor: the same busybox server in a container with its port published, `-p`, reached at 127.0.0.1)";

const HTTP_PORT: u16 = 8000;
const BLOB_PORT: u16 = 9000;

/// Makes the blob and the page, then serves them: httpd in the background,
/// nc in the foreground (one blob per connection).
fn serving(bytes: u64) -> String {
    format!(
        "mkdir -p /tmp/www && head -c {bytes} /dev/zero > /tmp/www/blob && echo hi > /tmp/www/small \
         && busybox httpd -p {HTTP_PORT} -h /tmp/www \
         && exec busybox nc -ll -p {BLOB_PORT} -e cat /tmp/www/blob"
    )
}

fn row(operation: &str, paddock: Measured, floor: Measured, goal: Goal) -> Row {
    Row {
        section: SECTION.to_owned(),
        operation: operation.to_owned(),
        paddock,
        floor: Some(("published port".to_owned(), floor)),
        goal: Some(goal),
    }
}

/// A free local port for the preview proxy.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub async fn run(plan: &Plan, docker: &Docker) -> Vec<Row> {
    println!("ports: measuring");
    let bytes = if plan.full { 64 << 20 } else { 4 << 20 };
    let proxy: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let server =
        ServerProcess::start_with("docker", "auto", &["--preview-listen", &proxy.to_string()]);
    let channel = server.connect().await;
    let mut clients = Clients::new(channel.clone());
    let id = clients
        .create(pb::CreateSandboxRequest {
            image: IMAGE.into(),
            network: pb::NetworkMode::None as i32,
            ..Default::default()
        })
        .await;
    clients
        .exec
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(pb::CommandSpec {
                shell: serving(bytes),
                ..Default::default()
            }),
        })
        .await
        .expect("start the servers");
    let floor = published(docker, bytes).await;
    // Both sides ready: each answers a request.
    for _ in 0..200 {
        let ready = forward_get(&channel, &id, "/small").await.is_some()
            && tcp_get(floor.http, "/small").await.is_some();
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut rows = Vec::new();
    let (ours, theirs) = side_by_side(
        plan.rounds,
        5,
        || async {
            forward_get(&channel, &id, "/small")
                .await
                .expect("an answer");
        },
        || async {
            tcp_get(floor.http, "/small").await.expect("an answer");
        },
        no_pause,
    )
    .await;
    rows.push(row(
        "small HTTP request, new connection: `PortForward` (raw HTTP/1.0)",
        Measured::Latency(Stats::of(&ours)),
        Measured::Latency(Stats::of(&theirs)),
        Goal::WithinOf(Duration::from_millis(2)),
    ));
    let path = format!("/preview/{id}/{HTTP_PORT}/small");
    let (ours, theirs) = side_by_side(
        plan.rounds,
        5,
        || async {
            tcp_get(proxy, &path).await.expect("an answer");
        },
        || async {
            tcp_get(floor.http, "/small").await.expect("an answer");
        },
        no_pause,
    )
    .await;
    rows.push(row(
        "small HTTP request, new connection: the preview proxy",
        Measured::Latency(Stats::of(&ours)),
        Measured::Latency(Stats::of(&theirs)),
        Goal::WithinOf(Duration::from_millis(2)),
    ));

    let (ours, theirs) = side_by_side(
        plan.transfer_rounds.max(3),
        1,
        || async {
            assert_eq!(forward_read(&channel, &id).await, bytes);
        },
        || async {
            assert_eq!(tcp_read(floor.blob).await, bytes);
        },
        no_pause,
    )
    .await;
    rows.push(row(
        &format!(
            "{} from a sandbox's server: `PortForward`",
            Plan::mib(bytes)
        ),
        Measured::Transfer {
            time: Stats::of(&ours),
            bytes,
        },
        Measured::Transfer {
            time: Stats::of(&theirs),
            bytes,
        },
        Goal::ThroughputAtLeast(0.5),
    ));
    let blob_path = format!("/preview/{id}/{HTTP_PORT}/blob");
    let (ours, theirs) = side_by_side(
        plan.transfer_rounds.max(3),
        1,
        || async {
            let body = tcp_get(proxy, &blob_path).await.expect("an answer");
            assert!(body >= bytes);
        },
        || async {
            let body = tcp_get(floor.http, "/blob").await.expect("an answer");
            assert!(body >= bytes);
        },
        no_pause,
    )
    .await;
    rows.push(row(
        &format!("{} over HTTP: the preview proxy", Plan::mib(bytes)),
        Measured::Transfer {
            time: Stats::of(&ours),
            bytes,
        },
        Measured::Transfer {
            time: Stats::of(&theirs),
            bytes,
        },
        Goal::ThroughputAtLeast(0.5),
    ));
    clients.delete(&id).await;
    remove(docker, &floor.container).await;
    rows
}

/// The floor's container and its published ports.
struct Published {
    container: String,
    http: SocketAddr,
    blob: SocketAddr,
}

async fn published(docker: &Docker, bytes: u64) -> Published {
    let name = format!("paddock-bench-{}", uuid::Uuid::now_v7().simple());
    let (http, blob) = (free_port(), free_port());
    let binding = |port: u16| {
        Some(vec![PortBinding {
            host_ip: Some("127.0.0.1".to_owned()),
            host_port: Some(port.to_string()),
        }])
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            ContainerCreateBody {
                image: Some(IMAGE.to_owned()),
                cmd: Some(vec!["sh".into(), "-c".into(), serving(bytes)]),
                labels: Some([(crate::engine::LABEL.to_owned(), "floor".to_owned())].into()),
                exposed_ports: Some(vec![format!("{HTTP_PORT}/tcp"), format!("{BLOB_PORT}/tcp")]),
                host_config: Some(HostConfig {
                    port_bindings: Some(
                        [
                            (format!("{HTTP_PORT}/tcp"), binding(http)),
                            (format!("{BLOB_PORT}/tcp"), binding(blob)),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create the floor's container");
    docker
        .start_container(&name, None)
        .await
        .expect("start the floor's container");
    Published {
        container: name,
        http: ([127, 0, 0, 1], http).into(),
        blob: ([127, 0, 0, 1], blob).into(),
    }
}

/// `GET path` on a new connection to `addr`; the bytes of the answer.
async fn tcp_get(addr: SocketAddr, path: &str) -> Option<u64> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let answer = read_all(&mut stream).await?;
    (answer > 0).then_some(answer)
}

/// Everything `addr` sends on a new connection.
async fn tcp_read(addr: SocketAddr) -> u64 {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the floor");
    read_all(&mut stream).await.expect("read the blob")
}

async fn read_all(stream: &mut tokio::net::TcpStream) -> Option<u64> {
    let mut buffer = vec![0; 256 << 10];
    let mut total = 0;
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) => return Some(total),
            Ok(n) => total += n as u64,
            Err(_) => return (total > 0).then_some(total),
        }
    }
}

/// A forward to `port` with `first` sent and the sending side closed;
/// the bytes that came back.
async fn forward(channel: &Channel, id: &str, port: u16, first: Option<Bytes>) -> Option<u64> {
    let (requests, outgoing) = tokio::sync::mpsc::channel(4);
    let message = |request| pb::PortForwardRequest {
        request: Some(request),
    };
    let _ = requests
        .send(message(Up::Start(pb::PortForwardStart {
            sandbox_id: id.into(),
            port: u32::from(port),
            address: String::new(),
        })))
        .await;
    if let Some(first) = first {
        let _ = requests.send(message(Up::Data(first))).await;
        let _ = requests
            .send(message(Up::CloseWrite(pb::CloseWrite {})))
            .await;
    }
    let mut answers = PortServiceClient::new(channel.clone())
        .max_decoding_message_size(4 << 20)
        .port_forward(ReceiverStream::new(outgoing))
        .await
        .ok()?
        .into_inner();
    let mut total = 0;
    while let Some(answer) = answers.message().await.ok()? {
        match answer.response {
            Some(Down::Data(data)) => total += data.len() as u64,
            Some(Down::ClosedWrite(_)) => break,
            _ => {}
        }
    }
    drop(requests);
    (total > 0).then_some(total)
}

async fn forward_get(channel: &Channel, id: &str, path: &str) -> Option<u64> {
    let request = format!("GET {path} HTTP/1.0\r\n\r\n");
    forward(channel, id, HTTP_PORT, Some(Bytes::from(request))).await
}

async fn forward_read(channel: &Channel, id: &str) -> u64 {
    forward(channel, id, BLOB_PORT, None)
        .await
        .expect("the blob")
}
