//! Sandbox metadata: a `google.protobuf.Struct` in the API, a JSON object in
//! the domain, bounded in size.

use prost_types::value::Kind;

use crate::error::{Error, Result};
use crate::sandbox::Metadata;
use crate::sandbox::rules::MAX_METADATA_BYTES;

pub(super) fn metadata_from_pb(
    field: &str,
    metadata: Option<prost_types::Struct>,
) -> Result<Metadata> {
    let Some(metadata) = metadata else {
        return Ok(Metadata::new());
    };
    let map = struct_to_json(field, metadata)?;
    let encoded = serde_json::to_vec(&map).map_err(|e| Error::internal("encoding metadata", e))?;
    if encoded.len() > MAX_METADATA_BYTES {
        return Err(Error::invalid_argument(
            field,
            format!(
                "is {} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed",
                encoded.len()
            ),
        ));
    }
    Ok(map)
}

pub(super) fn struct_to_json(field: &str, value: prost_types::Struct) -> Result<Metadata> {
    value
        .fields
        .into_iter()
        .map(|(k, v)| Ok((k, value_to_json(field, v)?)))
        .collect()
}

fn value_to_json(field: &str, value: prost_types::Value) -> Result<serde_json::Value> {
    use serde_json::Value as Json;
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::StringValue(s)) => Json::String(s),
        // Struct numbers are doubles; whole ones are kept as JSON integers
        // while exact (below 2^53) so that stored metadata reads naturally.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
            Json::from(n as i64)
        }
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(n)
            .map(Json::Number)
            .ok_or_else(|| {
                Error::invalid_argument(field, "numbers must be finite (no NaN or infinity)")
            })?,
        Some(Kind::StructValue(s)) => Json::Object(struct_to_json(field, s)?),
        Some(Kind::ListValue(list)) => Json::Array(
            list.values
                .into_iter()
                .map(|v| value_to_json(field, v))
                .collect::<Result<_>>()?,
        ),
    })
}

pub(super) fn metadata_to_pb(metadata: &Metadata) -> prost_types::Struct {
    prost_types::Struct {
        fields: metadata
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(json: &serde_json::Value) -> prost_types::Value {
    use serde_json::Value as Json;
    let kind = match json {
        Json::Null => Kind::NullValue(prost_types::NullValue::NullValue as i32),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(metadata_to_pb(map)),
    };
    prost_types::Value { kind: Some(kind) }
}
