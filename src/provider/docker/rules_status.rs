//! What the last check of a network mode's firewall rules found, shared by
//! EGRESS and ALLOW_LIST: why the mode cannot be enforced, or since when
//! it is known to be.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::error::Result;

/// The outcome of the last check of one mode's rules.
#[derive(Debug)]
pub(super) struct RulesStatus {
    /// The mode's API name, for the log.
    mode: &'static str,
    last: Mutex<Checked>,
}

#[derive(Debug)]
enum Checked {
    /// The rules were in place (or put back) at this instant.
    Enforced(Instant),
    /// They could not be installed, for this reason.
    Failed(String),
}

impl RulesStatus {
    pub(super) fn new(mode: &'static str) -> Self {
        Self {
            mode,
            last: Mutex::new(Checked::Failed("not checked yet".to_owned())),
        }
    }

    /// Why the mode cannot be enforced, as found by the last check; `None`
    /// when it can.
    pub(super) fn failure(&self) -> Option<String> {
        match &*self.last.lock().expect("rules status") {
            Checked::Enforced(_) => None,
            Checked::Failed(why) => Some(why.clone()),
        }
    }

    /// Whether the last check, no older than `max_age`, found the rules in
    /// place.
    pub(super) fn enforced_within(&self, max_age: Duration) -> bool {
        matches!(
            &*self.last.lock().expect("rules status"),
            Checked::Enforced(at) if at.elapsed() <= max_age
        )
    }

    /// Records a check's `outcome` (logging when it changes whether the
    /// mode is enforced) and returns it.
    pub(super) fn record(&self, outcome: Result<()>) -> Result<()> {
        let mut last = self.last.lock().expect("rules status");
        let now = match &outcome {
            Ok(()) => Checked::Enforced(Instant::now()),
            Err(error) => Checked::Failed(error.message().to_owned()),
        };
        match (&*last, &now) {
            (Checked::Failed(_), Checked::Enforced(_)) => {
                info!(mode = self.mode, "network mode is enforced")
            }
            (_, Checked::Failed(why)) if self.failure_differs(&last, why) => {
                warn!(mode = self.mode, %why, "network mode cannot be enforced")
            }
            _ => {}
        }
        *last = now;
        outcome
    }

    fn failure_differs(&self, last: &Checked, why: &str) -> bool {
        !matches!(last, Checked::Failed(before) if before == why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn a_recent_success_is_trusted_and_a_failure_is_kept_with_its_reason() {
        let status = RulesStatus::new("NETWORK_MODE_EGRESS");
        assert_eq!(status.failure().as_deref(), Some("not checked yet"));
        assert!(!status.enforced_within(Duration::from_secs(10)));
        status.record(Ok(())).unwrap();
        assert_eq!(status.failure(), None);
        assert!(status.enforced_within(Duration::from_secs(10)));
        assert!(!status.enforced_within(Duration::ZERO));
        let _ = status.record(Err(Error::failed_precondition("no root")));
        assert_eq!(status.failure().as_deref(), Some("no root"));
        assert!(!status.enforced_within(Duration::from_secs(10)));
    }
}
