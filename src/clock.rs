//! Wall-clock time as the store keeps it: whole milliseconds since the epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The current time, cut to whole milliseconds so that a value read back from
/// the store equals the value written.
pub fn now() -> SystemTime {
    from_millis(to_millis(SystemTime::now()))
}

/// Milliseconds since the Unix epoch; times before it count as the epoch.
pub fn to_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time `millis` milliseconds after the Unix epoch (negative counts as 0).
pub fn from_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}
