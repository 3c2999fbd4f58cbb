//! `-o json`: API messages printed in protobuf's canonical JSON mapping
//! (the field names and value forms grpcurl prints), for scripts.

use std::sync::LazyLock;

use anyhow::Context;
use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::pb;

/// How a read command prints what it got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Columns and lines for people.
    #[default]
    Text,
    /// JSON: one object, an array for lists, one object per line for
    /// streams.
    Json,
}

/// The API's descriptors, for JSON.
static API: LazyLock<Result<DescriptorPool, String>> =
    LazyLock::new(|| DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()));

/// `message`, whose protobuf name is `name` (such as "paddock.v1.Sandbox"),
/// as JSON.
pub fn json_value<M: prost::Message>(message: &M, name: &str) -> anyhow::Result<serde_json::Value> {
    let pool = API
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the API's descriptors do not load: {e}"))?;
    let descriptor = pool
        .get_message_by_name(name)
        .with_context(|| format!("no message {name} in the API"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    Ok(serde_json::to_value(&dynamic)?)
}

/// `message` as one line of JSON.
pub fn json_line<M: prost::Message>(message: &M, name: &str) -> anyhow::Result<String> {
    Ok(serde_json::to_string(&json_value(message, name)?)?)
}

/// `message` as indented JSON.
pub fn json_pretty<M: prost::Message>(message: &M, name: &str) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&json_value(message, name)?)?)
}

/// Messages as an indented JSON array.
pub fn json_array<M: prost::Message>(messages: &[M], name: &str) -> anyhow::Result<String> {
    let values = messages
        .iter()
        .map(|message| json_value(message, name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(serde_json::to_string_pretty(&values)?)
}
