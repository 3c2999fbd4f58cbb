//! What this server counts of the warm pools (hits, misses, how long a
//! refill took), and what wakes their refill: state the [`super::Manager`]
//! holds, for warm.rs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A template's warm pool as this server sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmPoolStatus {
    /// Pooled sandboxes of the latest version ready to claim.
    pub ready: u32,
    /// Pooled sandboxes being made.
    pub starting: u32,
    /// Creates that claimed one, since this server started.
    pub hits: u64,
    /// Creates that found none ready, since this server started.
    pub misses: u64,
    /// How long this server's last refill took to make one.
    pub last_refill: Option<Duration>,
    /// Pooled sandboxes this server could not make ready.
    pub failures: u64,
    /// Why the last of them failed.
    pub last_failure: Option<String>,
}

/// This server's side of the pools: their counters, and what wakes the
/// refill.
#[derive(Default)]
pub(super) struct WarmPools {
    pub(super) wake: Notify,
    /// Hits, misses and the last refill's duration per template id.
    counters: Mutex<HashMap<String, WarmPoolStatus>>,
    /// Templates whose last pooled sandbox failed to start, and until when
    /// their refill rests (a setup that always fails must not make a
    /// sandbox a second).
    resting: Mutex<HashMap<String, Instant>>,
}

/// How long a pool's refill rests after a pooled sandbox failed.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(30);

impl WarmPools {
    pub(super) fn count(&self, template_id: &str, change: impl FnOnce(&mut WarmPoolStatus)) {
        change(
            self.counters
                .lock()
                .expect("warm pool counters")
                .entry(template_id.to_owned())
                .or_default(),
        );
    }

    /// Rests template `template_id`'s refill: its last make failed.
    pub(super) fn rest(&self, template_id: &str) {
        self.resting
            .lock()
            .expect("resting pools")
            .insert(template_id.to_owned(), Instant::now() + REST_AFTER_FAILURE);
    }

    /// Whether template `template_id`'s refill rests now.
    pub(super) fn resting(&self, template_id: &str) -> bool {
        let mut resting = self.resting.lock().expect("resting pools");
        match resting.get(template_id) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                resting.remove(template_id);
                false
            }
            None => false,
        }
    }

    pub(super) fn counters(&self, template_id: &str) -> WarmPoolStatus {
        self.counters
            .lock()
            .expect("warm pool counters")
            .get(template_id)
            .cloned()
            .unwrap_or_default()
    }
}
