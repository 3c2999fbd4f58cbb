//! Reaching the agents inside running sandboxes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::{Manager, SandboxState};
use crate::error::{Error, Result};

/// Activity is written to the store at most this often per sandbox.
const ACTIVITY_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// Channels to agents, reused across calls, and when activity was last noted.
#[derive(Default)]
pub(super) struct AgentChannels {
    channels: Mutex<HashMap<String, Channel>>,
    activity: Mutex<HashMap<String, Instant>>,
}

impl AgentChannels {
    /// Forgets a sandbox's channel (it stopped or went away).
    pub(super) fn forget(&self, sandbox_id: &str) {
        self.channels
            .lock()
            .expect("agent channels")
            .remove(sandbox_id);
        self.activity.lock().expect("activity").remove(sandbox_id);
    }
}

impl Manager {
    /// A channel to the agent of the tenant's sandbox `id`, which must be
    /// RUNNING on a provider that runs commands. Notes activity on it.
    pub async fn agent(&self, tenant: &str, id: &str) -> Result<Channel> {
        let channel = self.running_agent(tenant, id).await?;
        self.note_activity(id).await?;
        Ok(channel)
    }

    /// Like [`Manager::agent`], without noting activity (for looking in).
    pub async fn running_agent(&self, tenant: &str, id: &str) -> Result<Channel> {
        let sandbox = self.get(tenant, id).await?;
        if sandbox.state != SandboxState::Running {
            return Err(Error::failed_precondition(format!(
                "sandbox {id} is {}; commands and file operations need a RUNNING sandbox",
                sandbox.state
            )));
        }
        let provider = self.providers().get(&sandbox.provider)?.clone();
        if !provider.info().await.capabilities.exec {
            return Err(Error::failed_precondition(format!(
                "provider {} cannot run commands",
                sandbox.provider
            )));
        }
        let agents = self.agent_channels();
        if let Some(channel) = agents.channels.lock().expect("agent channels").get(id) {
            return Ok(channel.clone());
        }
        let channel = self.call(provider.connect(id)).await?;
        agents
            .channels
            .lock()
            .expect("agent channels")
            .insert(id.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Notes that the sandbox `id` is in use (an open exec stream moved data),
    /// writing to the store at most once a second per sandbox.
    pub async fn note_activity(&self, id: &str) -> Result<()> {
        let now = Instant::now();
        let due = {
            let mut activity = self.agent_channels().activity.lock().expect("activity");
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
