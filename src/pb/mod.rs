//! Code generated from `proto/` by `build.rs`. Nothing else in the crate
//! allows lints; the generated code is fenced off here.

#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

tonic::include_proto!("paddock.v1");

/// The encoded descriptor set of every proto the server serves, with its
/// imports, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/paddock_descriptor.bin"));

mod forward;
