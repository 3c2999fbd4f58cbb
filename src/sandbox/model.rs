//! What a sandbox is: its record, what it is made of, and its lifecycle
//! events. Plain data, used by every layer below the API; it depends on no
//! other part of the domain.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::state::SandboxState;

/// The tenant that owns every sandbox until API keys and tenants arrive.
pub const DEFAULT_TENANT: &str = "default";

/// Label keys and values.
pub type Labels = BTreeMap<String, String>;

/// Free-form caller data, a JSON object.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// The network a sandbox is attached to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The internet, but no other sandbox, the host, link-local addresses or
    /// the blocked ranges.
    #[default]
    Egress,
    /// An open network shared with other sandboxes and the host; only when
    /// the operator allows it.
    Bridge,
    /// Loopback only.
    None,
    /// Only the hosts of [`SandboxSpec::allowed_hosts`], by name (DNS
    /// answered for those names alone) or by IPv4 range.
    AllowList,
}

impl NetworkMode {
    /// The API's name of the mode, for messages.
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Egress => "NETWORK_MODE_EGRESS",
            Self::Bridge => "NETWORK_MODE_BRIDGE",
            Self::None => "NETWORK_MODE_NONE",
            Self::AllowList => "NETWORK_MODE_ALLOW_LIST",
        }
    }
}

/// Resource limits; `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Thousandths of a CPU core.
    pub cpu_millis: Option<u64>,
    /// Bytes of memory.
    pub memory_bytes: Option<u64>,
    /// Processes and threads at once.
    pub pids: Option<u64>,
}

impl Resources {
    /// `self` with every limit of 0 unset (0 means none in settings).
    pub fn without_zeros(self) -> Self {
        let set = |limit: Option<u64>| limit.filter(|value| *value != 0);
        Self {
            cpu_millis: set(self.cpu_millis),
            memory_bytes: set(self.memory_bytes),
            pids: set(self.pids),
        }
    }

    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.cpu_millis.is_some() || self.memory_bytes.is_some() || self.pids.is_some()
    }
}

/// A named volume mounted into a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The volume's name, as its tenant calls it.
    pub name: String,
    /// The volume's id (`vol_…`), which names the provider's object; filled
    /// in when the sandbox is created. Empty in records made before volumes
    /// had ids, whose providers mount the volume by its name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub volume_id: String,
    /// The absolute path it is mounted at inside the sandbox.
    pub mount_path: String,
    /// Whether it is mounted read-only.
    pub read_only: bool,
}

impl Volume {
    /// The name of the provider object holding a volume of id `volume_id`
    /// (a Docker volume, a directory): `paddock-vol_…`.
    pub fn object_name_of(volume_id: &str) -> String {
        format!("paddock-{volume_id}")
    }

    /// The name of the provider object this mount names: from its id, or
    /// for a record made before volumes had ids, the name as given.
    pub fn object_name(&self) -> String {
        if self.volume_id.is_empty() {
            self.name.clone()
        } else {
            Self::object_name_of(&self.volume_id)
        }
    }
}

/// Which template version a sandbox was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRef {
    /// The template's id.
    pub id: String,
    /// Its name when the sandbox was made.
    pub name: String,
    /// The version.
    pub version: i64,
}

impl TemplateRef {
    /// "NAME@VERSION", as the API shows it.
    pub fn display(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// What a sandbox is made of; fixed when it is created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The image, for providers that use images.
    pub image: Option<String>,
    /// Environment variables. Write-only: never returned by the API.
    pub env: BTreeMap<String, String>,
    /// The working directory of commands, an absolute path.
    pub workdir: String,
    /// Resource limits.
    pub resources: Resources,
    /// The network.
    pub network: NetworkMode,
    /// What an [`NetworkMode::AllowList`] sandbox may reach: domain names,
    /// `*.` wildcards and IPv4 ranges, checked and in their canonical form;
    /// empty for the other modes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Named volumes.
    pub volumes: Vec<Volume>,
    /// Whether the root filesystem is read-only (volumes, the workdir's
    /// volume if any, and /tmp as the image has it stay as they are).
    #[serde(default)]
    pub read_only_root: bool,
    /// Stop after this long without activity.
    #[serde(with = "optional_millis")]
    pub idle_timeout: Option<Duration>,
    /// Who commands run as when they name nobody (an image's `USER`, filled
    /// in by the provider); `None`: the agent's own user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The container runtime (such as `runsc`); `None`: the engine's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// A shell line run once when the sandbox first starts (its template's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_command: Option<String>,
    /// The template version it was made from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRef>,
    /// Environment variables that every command gets from the control plane
    /// rather than from the sandbox's own environment: those a create gave
    /// when it claimed a warm sandbox made without them. A command's own
    /// env wins over these. Also in `env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub command_env: BTreeMap<String, String>,
}

/// The durable record of one sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Sandbox {
    /// `sbx_…`, never reused.
    pub id: String,
    /// The owner.
    pub tenant: String,
    /// A name unique among the tenant's sandboxes that are not deleted.
    pub name: Option<String>,
    /// The provider that runs it.
    pub provider: String,
    /// The provider's own id for what it made, once it has made it.
    pub provider_ref: Option<String>,
    /// The lifecycle state.
    pub state: SandboxState,
    /// Why it is in that state, for humans; may be empty.
    pub state_reason: String,
    /// What it is made of.
    pub spec: SandboxSpec,
    /// Labels for selection.
    pub labels: Labels,
    /// Free-form caller data.
    pub metadata: Metadata,
    /// The caller's idempotency key for the create, if any.
    pub request_id: Option<String>,
    /// A digest of the create request, to spot a key reused for another request.
    pub request_fingerprint: Option<String>,
    /// When the record was written.
    pub created_at: SystemTime,
    /// When the record last changed.
    pub updated_at: SystemTime,
    /// When it last became RUNNING.
    pub started_at: Option<SystemTime>,
    /// When the reaper deletes it.
    pub expires_at: Option<SystemTime>,
    /// The last time a caller used it.
    pub last_activity_at: SystemTime,
    /// The ports its owner made public for the preview proxy, ascending.
    pub public_ports: Vec<u16>,
    /// The revision of the last event that changed it.
    pub revision: i64,
}

/// What an event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The record was written.
    Created,
    /// The state changed.
    StateChanged,
    /// Labels, metadata or lifetime changed.
    Updated,
}

impl EventType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::StateChanged => "STATE_CHANGED",
            Self::Updated => "UPDATED",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "CREATED" => Self::Created,
            "STATE_CHANGED" => Self::StateChanged,
            "UPDATED" => Self::Updated,
            _ => return None,
        })
    }
}

/// One lifecycle event, with the sandbox as it was right after it.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxEvent {
    /// The event's place in the single, growing event order.
    pub revision: i64,
    /// What happened.
    pub event_type: EventType,
    /// When.
    pub time: SystemTime,
    /// The sandbox right after the event (environment values blanked).
    pub sandbox: Sandbox,
}

mod optional_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}
