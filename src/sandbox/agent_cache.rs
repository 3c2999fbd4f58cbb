//! The clients of running sandboxes' agents, one per sandbox, and when
//! activity was last noted on each: the manager's cache, filled when a
//! provider starts a sandbox (or on first use after a restart) and emptied
//! when the sandbox leaves RUNNING (see `Manager::modify`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::agent_client::{AgentChannel, AgentClient};

/// The clients of running sandboxes' agents, and when activity was last
/// noted on each sandbox.
#[derive(Default)]
pub(super) struct AgentClients {
    clients: Mutex<HashMap<String, AgentClient>>,
    /// When activity on each sandbox was last written to the store.
    pub(super) activity: Mutex<HashMap<String, Instant>>,
}

impl AgentClients {
    /// Keeps `channel` as the way to sandbox `sandbox_id`'s agent, in place of
    /// any earlier one, and returns the client speaking through it.
    pub(super) fn remember(&self, sandbox_id: &str, channel: AgentChannel) -> AgentClient {
        let agent = AgentClient::new(channel);
        self.clients
            .lock()
            .expect("agent clients")
            .insert(sandbox_id.to_owned(), agent.clone());
        agent
    }

    /// Forgets a sandbox's agent (it left RUNNING).
    pub(super) fn forget(&self, sandbox_id: &str) {
        self.clients
            .lock()
            .expect("agent clients")
            .remove(sandbox_id);
        self.activity.lock().expect("activity").remove(sandbox_id);
    }

    pub(super) fn get(&self, sandbox_id: &str) -> Option<AgentClient> {
        self.clients
            .lock()
            .expect("agent clients")
            .get(sandbox_id)
            .cloned()
    }
}
