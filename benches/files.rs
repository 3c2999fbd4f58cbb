//! File operations through Paddock next to the Docker Engine's archive API
//! on the same engine, image and container, alternating the two.
//!
//! `cargo bench --bench files` runs it in full (200 rounds of small
//! operations, 3 rounds of 256 MiB each way); any other invocation (such as
//! `cargo test --bench files`, which CI runs) is a short smoke run with
//! 16 MiB transfers. It needs an engine, the static agent
//! (`PADDOCK_STATIC_AGENT`) and the image paddock-test/busybox; without them
//! it says so and is skipped, except under CI=true, where that is an error.
//!
//! The floors: `Stat` against `HEAD /containers/{id}/archive` (the engine's
//! stat), `ReadFile` against `GET …/archive` of the same file (a tar of one
//! entry, unpacked here), `Upload` against `PUT …/archive` of a tar holding
//! the file, `Download` against `GET …/archive` of it. After each archive
//! request the run pauses 100 ms so that the engine's cleanup is not charged
//! to the next Paddock sample.

use std::time::{Duration, Instant};

use bollard::query_parameters::{
    ContainerArchiveInfoOptions, DownloadFromContainerOptions, UploadToContainerOptions,
};
use bytes::Bytes;
use futures::StreamExt;
use paddock::pb;
use paddock::pb::file_service_client::FileServiceClient;
use paddock::pb::sandbox_service_client::SandboxServiceClient;
use tonic::transport::Channel;

mod support;

use support::{BENCH_IMAGE, BenchServer, report, stats};

const SMALL_FILE: &[u8] = b"a small file of the kind agents read and write all day\n";

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, transfer_rounds, transfer_bytes) = if full {
        (200, 3, 256u64 << 20)
    } else {
        (10, 1, 16u64 << 20)
    };
    let Some(docker) = support::docker_or_skip("files").await else {
        return;
    };
    let server = BenchServer::start("docker").await;
    let mut sandboxes = SandboxServiceClient::new(server.channel.clone());
    let sandbox = sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            image: BENCH_IMAGE.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    let container = format!("paddock-{}", sandbox.id);
    let mut files = FileServiceClient::new(server.channel.clone())
        .max_decoding_message_size(8 << 20)
        .max_encoding_message_size(8 << 20);
    files
        .write_file(pb::WriteFileRequest {
            sandbox_id: sandbox.id.clone(),
            path: "/tmp/small.txt".into(),
            content: SMALL_FILE.to_vec(),
            overwrite: true,
            ..Default::default()
        })
        .await
        .unwrap();
    println!(
        "files on the docker provider ({BENCH_IMAGE}), floor: the Docker Engine archive API on the same container{}",
        if full {
            ""
        } else {
            " (smoke run; `cargo bench --bench files` for figures)"
        }
    );

    let (mut stat, mut raw_stat, mut read, mut raw_read) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds + 3 {
        let warm = round < 3;
        // Who goes first alternates, so neither always meets an idle
        // machine (or the other's leftovers).
        let paddock_first = round % 2 == 0;
        let mut paddock_stat = Duration::ZERO;
        let mut engine_stat = Duration::ZERO;
        for side in [paddock_first, !paddock_first] {
            let started = Instant::now();
            if side {
                files
                    .stat(pb::StatRequest {
                        sandbox_id: sandbox.id.clone(),
                        path: "/tmp/small.txt".into(),
                    })
                    .await
                    .unwrap();
                paddock_stat = started.elapsed();
            } else {
                docker
                    .get_container_archive_info(
                        &container,
                        Some(ContainerArchiveInfoOptions {
                            path: "/tmp/small.txt".into(),
                        }),
                    )
                    .await
                    .unwrap();
                engine_stat = started.elapsed();
            }
        }
        let started = Instant::now();
        let answer = files
            .read_file(pb::ReadFileRequest {
                sandbox_id: sandbox.id.clone(),
                path: "/tmp/small.txt".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.content, SMALL_FILE);
        let paddock_read = started.elapsed();
        let started = Instant::now();
        let tar = raw_download(&docker, &container, "/tmp/small.txt").await;
        assert_eq!(untar_one(&tar), SMALL_FILE);
        let engine_read = started.elapsed();
        // The engine goes on tidying up after an archive request; let it
        // finish before the next Paddock sample.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !warm {
            stat.push(paddock_stat);
            raw_stat.push(engine_stat);
            read.push(paddock_read);
            raw_read.push(engine_read);
        }
    }
    report(
        &format!("Stat, {rounds} rounds"),
        stats(stat),
        stats(raw_stat),
    );
    report(
        &format!("ReadFile {} B, {rounds} rounds", SMALL_FILE.len()),
        stats(read),
        stats(raw_read),
    );

    let (mut up, mut raw_up, mut down, mut raw_down) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..transfer_rounds {
        let started = Instant::now();
        upload(&mut files, &sandbox.id, "/tmp/big", transfer_bytes).await;
        up.push(started.elapsed());
        let started = Instant::now();
        raw_upload(&docker, &container, "/tmp", "big-raw", transfer_bytes).await;
        raw_up.push(started.elapsed());
        let started = Instant::now();
        let got = download(&mut files, &sandbox.id, "/tmp/big").await;
        down.push(started.elapsed());
        assert_eq!(got, transfer_bytes);
        let started = Instant::now();
        let got = raw_download_len(&docker, &container, "/tmp/big-raw").await;
        raw_down.push(started.elapsed());
        assert!(got >= transfer_bytes);
    }
    let mib = transfer_bytes >> 20;
    throughput(&format!("Upload {mib} MiB"), &up, &raw_up, transfer_bytes);
    throughput(
        &format!("Download {mib} MiB"),
        &down,
        &raw_down,
        transfer_bytes,
    );

    sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id,
        })
        .await
        .unwrap();
    server.stop().await;
}

/// Prints the median throughput of both sides and Paddock/floor of it (above
/// 1 means Paddock moves more per second).
fn throughput(name: &str, paddock: &[Duration], floor: &[Duration], bytes: u64) {
    let median = |samples: &[Duration]| {
        let mut sorted = samples.to_vec();
        sorted.sort();
        sorted[sorted.len() / 2]
    };
    let rate = |d: Duration| bytes as f64 / d.as_secs_f64() / (1 << 20) as f64;
    let (p, f) = (rate(median(paddock)), rate(median(floor)));
    println!(
        "{name:<34} paddock p50 {p:.0} MiB/s | floor p50 {f:.0} MiB/s | throughput ratio {:.2}x",
        p / f
    );
}

fn chunks(total: u64) -> impl Iterator<Item = Vec<u8>> {
    let block: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut left = total;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let n = left.min(block.len() as u64) as usize;
        left -= n as u64;
        Some(block[..n].to_vec())
    })
}

async fn upload(files: &mut FileServiceClient<Channel>, id: &str, path: &str, bytes: u64) {
    let messages = std::iter::once(pb::UploadRequest {
        request: Some(pb::upload_request::Request::Header(pb::UploadHeader {
            sandbox_id: id.into(),
            path: path.into(),
            overwrite: true,
            ..Default::default()
        })),
    })
    .chain(chunks(bytes).map(|chunk| pb::UploadRequest {
        request: Some(pb::upload_request::Request::Chunk(chunk.into())),
    }));
    files.upload(tokio_stream::iter(messages)).await.unwrap();
}

async fn download(files: &mut FileServiceClient<Channel>, id: &str, path: &str) -> u64 {
    let mut stream = files
        .download(pb::DownloadRequest {
            sandbox_id: id.into(),
            path: path.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut total = 0;
    while let Some(message) = stream.message().await.unwrap() {
        if let Some(pb::download_response::Response::Chunk(chunk)) = message.response {
            total += chunk.len() as u64;
        }
    }
    total
}

/// `PUT …/archive`: a tar of one file, streamed as it is made.
async fn raw_upload(docker: &bollard::Docker, container: &str, dir: &str, name: &str, bytes: u64) {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).unwrap();
    header.set_size(bytes);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let padding = (512 - bytes % 512) % 512;
    let body = std::iter::once(Bytes::copy_from_slice(header.as_bytes()))
        .chain(chunks(bytes).map(Bytes::from))
        .chain(std::iter::once(Bytes::from(vec![
            0u8;
            padding as usize + 1024
        ])));
    docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: dir.into(),
                ..Default::default()
            }),
            bollard::body_stream(futures::stream::iter(body)),
        )
        .await
        .unwrap();
}

/// `GET …/archive`: the whole tar.
async fn raw_download(docker: &bollard::Docker, container: &str, path: &str) -> Vec<u8> {
    let mut stream = docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions { path: path.into() }),
    );
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar.extend_from_slice(&chunk.unwrap());
    }
    tar
}

/// `GET …/archive`, counting bytes without keeping them.
async fn raw_download_len(docker: &bollard::Docker, container: &str, path: &str) -> u64 {
    let mut stream = docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions { path: path.into() }),
    );
    let mut total = 0;
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len() as u64;
    }
    total
}

fn untar_one(tar: &[u8]) -> Vec<u8> {
    let mut archive = tar::Archive::new(tar);
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
    content
}
