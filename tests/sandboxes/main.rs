//! SandboxService through gRPC, as a user calls it, against the real
//! server: the service itself, a sandbox's lifecycle, lists, updates,
//! watches and the reaper, and what every provider does with a sandbox's
//! spec.

#[path = "../common/mod.rs"]
mod common;

mod kubernetes;
mod lifecycle;
mod listing;
mod providers;
mod reaper;
mod service;
mod templates;
mod updates;
mod volumes;
mod warm_pools;
mod watch;

use common::calls::state;
use common::{Store, TestServer};
use futures::StreamExt;
use paddock::pb;
use prost::Message;
use std::collections::HashMap;
use std::time::Duration;
use tonic::Code;

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn named(name: &str) -> pb::CreateSandboxRequest {
    pb::CreateSandboxRequest {
        name: Some(name.to_owned()),
        ..Default::default()
    }
}
