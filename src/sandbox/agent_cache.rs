//! The clients of running sandboxes' agents, one per sandbox, which
//! sandboxes were lately found RUNNING, and when activity was last noted on
//! each: the manager's cache, filled when a provider starts a sandbox (or on
//! first use after a restart) and emptied when the sandbox leaves RUNNING
//! (see `Manager::modify`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::agent_client::{AgentChannel, AgentClient};

/// How long a sandbox found RUNNING is trusted to be, for commands and file
/// calls, without asking the store again. This server's own changes end the
/// trust at once; another replica's are seen within this time, as revoked
/// keys are.
pub(super) const RUNNING_TRUST: Duration = Duration::from_secs(1);

/// The most sandboxes trusted at once; past it the trust is cleared.
const TRUSTED_CAPACITY: usize = 10_000;

/// Sandboxes lately found RUNNING: their tenant and when, and how many
/// times a sandbox's agent was forgotten (see [`AgentClients::trust`]).
#[derive(Default)]
struct Trusted {
    sandboxes: HashMap<String, (String, Instant)>,
    forgotten: u64,
}

/// The clients of running sandboxes' agents, and when activity was last
/// noted on each sandbox.
#[derive(Default)]
pub(super) struct AgentClients {
    clients: Mutex<HashMap<String, AgentClient>>,
    trusted: Mutex<Trusted>,
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

    /// Keeps `agent` as the way to sandbox `sandbox_id`'s agent, in place of
    /// any earlier one (the same connection with other command env).
    pub(super) fn keep(&self, sandbox_id: &str, agent: &AgentClient) {
        self.clients
            .lock()
            .expect("agent clients")
            .insert(sandbox_id.to_owned(), agent.clone());
    }

    /// Forgets a sandbox's agent (it left RUNNING).
    pub(super) fn forget(&self, sandbox_id: &str) {
        {
            let mut trusted = self.trusted.lock().expect("trusted sandboxes");
            trusted.sandboxes.remove(sandbox_id);
            trusted.forgotten += 1;
        }
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

    /// How many times an agent was forgotten so far: taken before the store
    /// is asked whether a sandbox is RUNNING, and handed to [`Self::trust`].
    pub(super) fn forgotten(&self) -> u64 {
        self.trusted.lock().expect("trusted sandboxes").forgotten
    }

    /// Trusts that `tenant`'s sandbox `sandbox_id` is RUNNING, as the store
    /// said after [`Self::forgotten`] returned `forgotten`; unless an agent
    /// was forgotten since, when the answer may be stale.
    pub(super) fn trust(&self, sandbox_id: &str, tenant: &str, forgotten: u64) {
        let mut trusted = self.trusted.lock().expect("trusted sandboxes");
        if trusted.forgotten != forgotten {
            return;
        }
        if trusted.sandboxes.len() >= TRUSTED_CAPACITY {
            trusted.sandboxes.clear();
        }
        trusted
            .sandboxes
            .insert(sandbox_id.to_owned(), (tenant.to_owned(), Instant::now()));
    }

    /// The agent of `tenant`'s sandbox `sandbox_id` when the sandbox was
    /// found RUNNING within [`RUNNING_TRUST`].
    pub(super) fn trusted(&self, sandbox_id: &str, tenant: &str) -> Option<AgentClient> {
        self.trusted_at(sandbox_id, tenant, Instant::now())
    }

    fn trusted_at(&self, sandbox_id: &str, tenant: &str, now: Instant) -> Option<AgentClient> {
        let fresh = {
            let trusted = self.trusted.lock().expect("trusted sandboxes");
            trusted
                .sandboxes
                .get(sandbox_id)
                .is_some_and(|(owner, at)| {
                    owner == tenant && now.saturating_duration_since(*at) < RUNNING_TRUST
                })
        };
        if fresh { self.get(sandbox_id) } else { None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients_with(sandbox_id: &str) -> AgentClients {
        let clients = AgentClients::default();
        let channel = AgentChannel::unix_socket("/nonexistent/agent.sock".into());
        clients.remember(sandbox_id, channel);
        clients
    }

    #[tokio::test]
    async fn a_running_sandbox_is_trusted_for_its_tenant_only_until_forgotten() {
        let clients = clients_with("sbx_a");
        assert!(clients.trusted("sbx_a", "acme").is_none(), "not yet found");
        clients.trust("sbx_a", "acme", clients.forgotten());
        assert!(clients.trusted("sbx_a", "acme").is_some());
        assert!(
            clients.trusted("sbx_a", "globex").is_none(),
            "another tenant asks the store, which says NOT_FOUND"
        );
        clients.forget("sbx_a");
        assert!(
            clients.trusted("sbx_a", "acme").is_none(),
            "it left RUNNING"
        );
    }

    #[tokio::test]
    async fn an_answer_read_before_a_forget_is_not_trusted() {
        let clients = clients_with("sbx_a");
        let before = clients.forgotten();
        // The sandbox leaves RUNNING after the store said RUNNING.
        clients.forget("sbx_b");
        clients.trust("sbx_a", "acme", before);
        assert!(clients.trusted("sbx_a", "acme").is_none());
    }

    #[tokio::test]
    async fn trust_ends_after_a_second() {
        let clients = clients_with("sbx_a");
        clients.trust("sbx_a", "acme", clients.forgotten());
        let later = Instant::now() + RUNNING_TRUST;
        assert!(clients.trusted_at("sbx_a", "acme", later).is_none());
    }
}
