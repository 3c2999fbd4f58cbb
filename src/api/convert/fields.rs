//! Rules and conversions every message shares: ids, enums, durations,
//! timestamps.

use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::ids;
use crate::sandbox::rules;

/// A required sandbox id, checked for shape.
pub fn sandbox_id(field: &str, id: String) -> Result<String> {
    if id.is_empty() {
        return Err(Error::invalid_argument(field, "is required"));
    }
    if !ids::is_sandbox_id(&id) {
        return Err(Error::invalid_argument(
            field,
            format!(
                "{:?} is not a sandbox id (\"sbx_\" and 32 lowercase hex digits)",
                rules::shorten(&id)
            ),
        ));
    }
    Ok(id)
}

/// A proto enum field's value, or INVALID_ARGUMENT for a number the enum
/// does not define.
pub(super) fn enum_value<E: TryFrom<i32>>(field: &str, value: i32) -> Result<E> {
    E::try_from(value)
        .map_err(|_| Error::invalid_argument(field, format!("{value} is not a known value")))
}

pub(super) fn positive_duration(field: &str, duration: prost_types::Duration) -> Result<Duration> {
    let prost_types::Duration { seconds, nanos } = duration;
    if seconds < 0 || !(0..1_000_000_000).contains(&nanos) {
        return Err(Error::invalid_argument(
            field,
            "must be a positive duration",
        ));
    }
    let duration = Duration::new(seconds as u64, nanos as u32);
    if duration.is_zero() {
        return Err(Error::invalid_argument(
            field,
            "must be positive; leave it unset for the default",
        ));
    }
    Ok(duration)
}

pub(super) fn duration_to_pb(duration: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(duration).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

pub(super) fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    time.into()
}

pub(super) fn as_i64(value: Option<u64>) -> i64 {
    value.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

pub(super) fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}
