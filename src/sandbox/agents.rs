//! Reaching the agents inside running sandboxes: the manager hands callers
//! the sandbox's [`AgentClient`] (kept in agent_cache.rs) once the sandbox is
//! RUNNING on a provider that runs commands, and notes activity on it.
//!
//! The client is opaque here: the domain keeps it and hands it to callers,
//! who speak through it.

use std::time::{Duration, Instant};

use super::{Manager, SandboxState};
use crate::agent_client::AgentClient;
use crate::error::{Error, Result};

/// Activity is written to the store at most this often per sandbox.
const ACTIVITY_WRITE_INTERVAL: Duration = Duration::from_secs(1);

impl Manager {
    /// The agent of the tenant's sandbox `id`, which must be RUNNING on a
    /// provider that runs commands. Notes activity on it.
    pub async fn agent(&self, tenant: &str, id: &str) -> Result<AgentClient> {
        let agent = self.running_agent(tenant, id).await?;
        self.note_activity(id).await?;
        Ok(agent)
    }

    /// Like [`Manager::agent`], without noting activity (for looking in).
    /// A sandbox found RUNNING is trusted to be for a second without asking
    /// the store again (see [`super::agent_cache::RUNNING_TRUST`]).
    pub async fn running_agent(&self, tenant: &str, id: &str) -> Result<AgentClient> {
        let agents = self.agent_clients();
        if let Some(agent) = agents.trusted(id, tenant) {
            return Ok(agent);
        }
        let forgotten = agents.forgotten();
        let sandbox = self.get(tenant, id).await?;
        if sandbox.state != SandboxState::Running {
            return Err(Error::failed_precondition(format!(
                "sandbox {id} is {}; commands and file operations need a RUNNING sandbox",
                sandbox.state
            )));
        }
        let provider = self.providers().get(&sandbox.provider)?.clone();
        if !provider.capabilities().exec {
            return Err(Error::failed_precondition(format!(
                "provider {} cannot run commands",
                sandbox.provider
            )));
        }
        let agent = match agents.get(id) {
            Some(agent) => agent,
            None => match self.call("provider.connect", provider.connect(id)).await {
                Ok(agent) => agents.remember(id, agent),
                Err(error) => {
                    self.metrics().agent_connection_failed(&sandbox.provider);
                    return Err(error);
                }
            },
        };
        // A claimed warm sandbox's env reaches its commands through the
        // client (the agent was started without it).
        let agent = if sandbox.spec.command_env.is_empty() {
            agent
        } else {
            let agent = agent.with_command_env(&sandbox.spec.command_env);
            agents.keep(id, &agent);
            agent
        };
        agents.trust(id, tenant, forgotten);
        Ok(agent)
    }

    /// Notes that the sandbox `id` is in use (an open exec stream moved data),
    /// writing to the store at most once a second per sandbox.
    pub async fn note_activity(&self, id: &str) -> Result<()> {
        let now = Instant::now();
        let due = {
            let mut activity = self.agent_clients().activity.lock().expect("activity");
            let due = activity
                .get(id)
                .is_none_or(|last| now.duration_since(*last) >= ACTIVITY_WRITE_INTERVAL);
            if due {
                activity.insert(id.to_owned(), now);
            }
            due
        };
        if due {
            self.record_activity(id).await?;
        }
        Ok(())
    }
}
