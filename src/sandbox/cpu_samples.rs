//! [`CpuSamples`]: each sandbox's last measured CPU time, the start of the
//! window its next CPU share is averaged over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a remembered measurement serves as the start of the CPU
/// share's window.
const SHARE_WINDOW_MAX: Duration = Duration::from_secs(60);

/// The most sandboxes whose last measurement is remembered.
const REMEMBERED_MAX: usize = 10_000;

/// Each sandbox's last CPU time and when it was read.
#[derive(Default)]
pub(super) struct CpuSamples {
    last: Mutex<HashMap<String, (Instant, Duration)>>,
}

impl CpuSamples {
    /// The sample of `sandbox_id` still young enough to open a window, and
    /// `now`'s put in its place.
    pub(super) fn swap(
        &self,
        sandbox_id: &str,
        now: (Instant, Duration),
    ) -> Option<(Instant, Duration)> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() >= REMEMBERED_MAX && !last.contains_key(sandbox_id) {
            last.retain(|_, (at, _)| at.elapsed() < SHARE_WINDOW_MAX);
            if last.len() >= REMEMBERED_MAX {
                return None;
            }
        }
        last.insert(sandbox_id.to_owned(), now)
            .filter(|(at, _)| at.elapsed() < SHARE_WINDOW_MAX)
    }
}
