//! Generates the gRPC code and the reflection descriptor set from `proto/`.
//!
//! The protos are compiled by `protox`, a protobuf compiler written in Rust, so
//! a fresh machine needs no `protoc` and no well-known-type headers.

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "proto";
const PROTOS: &[&str] = &[
    "proto/paddock/v1/sandbox.proto",
    "proto/paddock/v1/exec.proto",
    "proto/paddock/v1/file.proto",
    "proto/paddock/v1/port.proto",
    "proto/paddock/v1/volume.proto",
    "proto/paddock/v1/template.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");

    let descriptors = protox::compile(PROTOS, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("paddock_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    // Transfer chunks and stream data as `bytes::Bytes`: decoding slices the received
    // buffer instead of copying it, which matters when the server relays
    // gigabytes between a caller and an agent.
    let chunks = [
        ".paddock.v1.UploadRequest.chunk",
        ".paddock.v1.DownloadResponse.chunk",
        ".paddock.v1.UploadArchiveRequest.chunk",
        ".paddock.v1.DownloadArchiveResponse.chunk",
        ".paddock.v1.ExecRequest.stdin",
        ".paddock.v1.ExecOutput.data",
        ".paddock.v1.PortForwardRequest.data",
        ".paddock.v1.PortForwardResponse.data",
        ".paddock.v1.BuildTemplateRequest.context",
    ];
    chunks
        .into_iter()
        .fold(tonic_prost_build::configure(), |config, path| {
            config.bytes(path)
        })
        // Messages that do not decode are INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::wire::codec::ProtoCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
