//! The sandbox state machine: every legal transition is listed here, and
//! nowhere else.

use std::fmt;

/// The lifecycle state of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SandboxState {
    /// The record is written; the provider has not been called yet.
    Pending,
    /// The provider is creating or starting it.
    Starting,
    /// Up and accepting work.
    Running,
    /// The provider is stopping it.
    Stopping,
    /// Stopped with its filesystem kept.
    Stopped,
    /// The provider is tearing it down.
    Deleting,
    /// Torn down; the record stays for audit.
    Deleted,
    /// Broken; `state_reason` says why. It can only be deleted.
    Failed,
}

/// What a requested lifecycle action should do, given the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Carry the action out.
    Proceed,
    /// The sandbox is already where the action leads: answer with it as it is.
    AlreadyDone,
}

impl SandboxState {
    /// Every state, in lifecycle order.
    pub const ALL: [SandboxState; 8] = [
        Self::Pending,
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Deleting,
        Self::Deleted,
        Self::Failed,
    ];

    /// The states in which the provider is in the middle of something. After
    /// a crash, start-up reconciliation finishes or fails sandboxes left here.
    pub const TRANSIENT: [SandboxState; 4] = [
        Self::Pending,
        Self::Starting,
        Self::Stopping,
        Self::Deleting,
    ];

    /// The name used in the store, logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Stopping => "STOPPING",
            Self::Stopped => "STOPPED",
            Self::Deleting => "DELETING",
            Self::Deleted => "DELETED",
            Self::Failed => "FAILED",
        }
    }

    /// Parses a name made by [`SandboxState::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the state machine allows moving from `self` to `next`.
    pub fn can_become(self, next: SandboxState) -> bool {
        use SandboxState::*;
        matches!(
            (self, next),
            (Pending | Stopped, Starting)
                | (Starting, Running)
                | (Running, Stopping)
                // Its object stopped by itself (it exited, or its engine went down).
                | (Running, Stopped)
                | (Stopping, Stopped)
                | (Running | Stopped | Failed | Deleting, Deleting)
                | (Deleting, Deleted)
                | (Pending | Starting | Running | Stopping | Stopped, Failed)
        )
    }

    /// Whether a stop request may go ahead; the error lists the states that
    /// allow it.
    pub fn plan_stop(self) -> Result<Step, &'static str> {
        match self {
            Self::Running => Ok(Step::Proceed),
            Self::Stopped => Ok(Step::AlreadyDone),
            _ => Err("only a RUNNING sandbox can be stopped"),
        }
    }

    /// Whether a start request may go ahead.
    pub fn plan_start(self) -> Result<Step, &'static str> {
        match self {
            Self::Stopped => Ok(Step::Proceed),
            Self::Running => Ok(Step::AlreadyDone),
            _ => Err("only a STOPPED sandbox can be started"),
        }
    }

    /// Whether a delete request may go ahead. A sandbox being provisioned or
    /// stopped must settle first, so that its provider object is known.
    pub fn plan_delete(self) -> Result<Step, &'static str> {
        match self {
            Self::Running | Self::Stopped | Self::Failed | Self::Deleting => Ok(Step::Proceed),
            Self::Deleted => Ok(Step::AlreadyDone),
            Self::Pending | Self::Starting | Self::Stopping => Err(
                "a sandbox can be deleted once it is RUNNING, STOPPED or FAILED; wait for it to settle",
            ),
        }
    }

    /// Whether labels, metadata and lifetime may change.
    pub fn plan_update(self) -> Result<Step, &'static str> {
        match self {
            Self::Deleting | Self::Deleted => Err("a deleted sandbox cannot be updated"),
            _ => Ok(Step::Proceed),
        }
    }
}

impl fmt::Display for SandboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::SandboxState::*;
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in SandboxState::ALL {
            assert_eq!(SandboxState::parse(state.as_str()), Some(state));
        }
        assert_eq!(SandboxState::parse("running"), None);
    }

    #[test]
    fn deleted_is_final() {
        for next in SandboxState::ALL {
            assert!(!Deleted.can_become(next), "DELETED must not become {next}");
        }
    }

    #[test]
    fn failed_can_only_be_deleted() {
        let allowed: Vec<_> = SandboxState::ALL
            .into_iter()
            .filter(|next| Failed.can_become(*next))
            .collect();
        assert_eq!(allowed, vec![Deleting]);
    }

    #[test]
    fn user_actions_follow_the_machine() {
        // Every action a plan lets proceed must be a legal first transition.
        for state in SandboxState::ALL {
            if state.plan_stop() == Ok(Step::Proceed) {
                assert!(state.can_become(Stopping));
            }
            if state.plan_start() == Ok(Step::Proceed) {
                assert!(state.can_become(Starting));
            }
            if state.plan_delete() == Ok(Step::Proceed) {
                assert!(state.can_become(Deleting));
            }
        }
        assert!(Pending.plan_delete().is_err());
        assert!(Deleted.plan_start().is_err());
        assert_eq!(Stopped.plan_stop(), Ok(Step::AlreadyDone));
    }
}
