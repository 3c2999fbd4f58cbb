//! The contract of the state store: what it keeps, how it is asked, and what
//! each method promises (tests/store runs the one suite against SQLite and
//! Postgres).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::error::Result;
use crate::sandbox::{
    EventType, LabelSelector, Sandbox, SandboxEvent, SandboxState, TemplateRecord,
};

/// Which sandboxes a list asks for, newest first.
#[derive(Debug, Clone, Default)]
pub struct SandboxQuery {
    /// Only this tenant's; `None` for every tenant (internal callers only).
    pub tenant: Option<String>,
    /// Only these states; empty for every state.
    pub states: Vec<SandboxState>,
    /// Only sandboxes whose labels match.
    pub selector: LabelSelector,
    /// Only sandboxes whose id sorts before this one (the page cursor).
    pub before_id: Option<String>,
    /// The most sandboxes to return.
    pub limit: usize,
}

/// Which events a watch asks for, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this tenant's; `None` for every tenant.
    pub tenant: Option<String>,
    /// Only this sandbox's; `None` for every sandbox.
    pub sandbox_id: Option<String>,
    /// Only events with a greater revision.
    pub after_revision: i64,
    /// The most events to return.
    pub limit: usize,
}

/// An API key as the store keeps it: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's public id (`key_…`), shown in listings and used to revoke.
    pub id: String,
    /// The tenant the key acts for.
    pub tenant: String,
    /// Lowercase hex SHA-256 of the whole key text (`pdk_…`).
    pub secret_sha256: String,
    /// What the key is for, as its maker said.
    pub description: String,
    /// When it was made.
    pub created_at: SystemTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<SystemTime>,
}

/// A named volume as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    /// `vol_…`, never reused: the provider names its object after it.
    pub id: String,
    /// The owner.
    pub tenant: String,
    /// A name unique among the tenant's volumes.
    pub name: String,
    /// The provider that holds it.
    pub provider: String,
    /// When it was made.
    pub created_at: SystemTime,
}

/// What a volume deletion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeRemoval {
    /// The record is gone; its provider object is the caller's to remove.
    Removed(VolumeRecord),
    /// The tenant has no volume of that name.
    Missing,
    /// Nothing was removed: these sandboxes, not DELETED, mount it.
    InUse(Vec<String>),
}

/// What a template deletion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateRemoval {
    /// Every version is gone (listed); their images are the caller's to
    /// remove.
    Removed(Vec<TemplateRecord>),
    /// The tenant has no template of that name.
    Missing,
    /// Nothing was removed: these sandboxes, not DELETED, were made from it.
    InUse(Vec<String>),
}

/// The durable home of sandbox records and events.
///
/// Every change to a record writes exactly one event in the same transaction
/// and gives the record that event's revision. Revisions grow strictly and
/// become visible in order, so a reader that has seen revision `r` never later
/// finds a new event below `r`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The store's identity: chosen at random the first time it is asked for,
    /// then the same for every server that uses this store.
    async fn store_id(&self) -> Result<String>;

    /// The secret called `name`: chosen at random the first time it is
    /// asked for, then the same for every server that uses this store.
    async fn shared_secret(&self, name: &str) -> Result<String>;

    /// Writes a new API key. `ALREADY_EXISTS` when its id or hash is taken.
    async fn insert_api_key(&self, key: &ApiKey) -> Result<()>;

    /// The key whose secret hashes to `secret_sha256`, revoked or not.
    async fn api_key_by_hash(&self, secret_sha256: &str) -> Result<Option<ApiKey>>;

    /// Every key, or the tenant's, oldest first.
    async fn list_api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>>;

    /// Marks key `id` revoked at `at` (a key revoked before keeps its first
    /// revocation time). `false` when there is no such key.
    async fn revoke_api_key(&self, id: &str, at: SystemTime) -> Result<bool>;

    /// Writes a new record and its CREATED event, and returns the record with
    /// its revision. `ALREADY_EXISTS` when the id, the tenant's live name (one
    /// not DELETED) or the tenant's request id is taken; nothing is written then.
    async fn insert_sandbox(&self, sandbox: &Sandbox) -> Result<Sandbox>;

    /// Replaces the record `sandbox.id` if its stored revision is still
    /// `expected_revision`, writing one event of `event_type`, and returns the
    /// record with the new revision. Every field but the id, provider and
    /// template is written: a warm sandbox's claim moves it to its tenant,
    /// with its request's name, spec and idempotency key, in this one update. Returns `None` and writes nothing when the
    /// record is missing or has moved on (a concurrent change won): the caller
    /// re-reads and decides again. `ALREADY_EXISTS` when the change would take a
    /// live name that another sandbox holds.
    async fn update_sandbox(
        &self,
        sandbox: &Sandbox,
        expected_revision: i64,
        event_type: EventType,
    ) -> Result<Option<Sandbox>>;

    /// The record `id` of `tenant`, deleted or not; `None` when there is none.
    async fn get_sandbox(&self, tenant: &str, id: &str) -> Result<Option<Sandbox>>;

    /// The record `id`, whoever's it is: for the preview proxy, which must
    /// find a public port's sandbox for visitors who name no tenant.
    async fn get_sandbox_of_any_tenant(&self, id: &str) -> Result<Option<Sandbox>>;

    /// The tenant's sandbox called `name` that is not DELETED, if any.
    async fn find_by_name(&self, tenant: &str, name: &str) -> Result<Option<Sandbox>>;

    /// The tenant's sandbox created with idempotency key `request_id`, if any.
    async fn find_by_request_id(&self, tenant: &str, request_id: &str) -> Result<Option<Sandbox>>;

    /// Sandboxes matching `query`, newest (greatest id) first.
    async fn list_sandboxes(&self, query: &SandboxQuery) -> Result<Vec<Sandbox>>;

    /// Sandboxes that the reaper must act on at `now`: not deleted and past
    /// their expiry, or RUNNING and idle for longer than their idle timeout.
    async fn list_due(&self, now: SystemTime, limit: usize) -> Result<Vec<Sandbox>>;

    /// Records activity on a sandbox without writing an event (activity is
    /// too frequent to be a lifecycle event). Missing ids are ignored.
    async fn record_activity(&self, id: &str, at: SystemTime) -> Result<()>;

    /// Events matching `query`, in revision order.
    async fn list_events(&self, query: &EventQuery) -> Result<Vec<SandboxEvent>>;

    /// How many sandboxes each provider holds in each state, DELETED left
    /// out: `(provider, state, count)`, every tenant's together.
    async fn census(&self) -> Result<Vec<(String, SandboxState, u64)>>;

    /// Takes or renews the lease `name` for `holder` until `ttl` from now by
    /// the database's clock: granted when no one holds it, `holder` does, or
    /// its holder let it expire. Whether `holder` holds it now.
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;

    /// Ends `holder`'s lease `name` at once, so that another may take it
    /// without waiting for it to expire; nothing when `holder` does not hold
    /// it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;

    /// Writes a new volume. `ALREADY_EXISTS` when its id or the tenant's name
    /// is taken.
    async fn insert_volume(&self, volume: &VolumeRecord) -> Result<()>;

    /// The tenant's volume called `name`, if any.
    async fn get_volume(&self, tenant: &str, name: &str) -> Result<Option<VolumeRecord>>;

    /// The tenant's volumes, by name.
    async fn list_volumes(&self, tenant: &str) -> Result<Vec<VolumeRecord>>;

    /// The sandboxes, not DELETED, that mount volume `volume_id`, by id.
    async fn volume_users(&self, volume_id: &str) -> Result<Vec<String>>;

    /// Removes the tenant's volume `name` unless a sandbox that is not
    /// DELETED mounts it. Serialised with sandbox inserts, so that no new
    /// sandbox mounts a volume while it goes.
    async fn delete_volume(&self, tenant: &str, name: &str) -> Result<VolumeRemoval>;

    /// Writes a template version. `ALREADY_EXISTS` when the tenant's
    /// template has that version already (for version 1: the name is taken).
    async fn insert_template(&self, template: &TemplateRecord) -> Result<()>;

    /// The tenant's template `name` at `version`, or at its latest when
    /// `None`.
    async fn get_template(
        &self,
        tenant: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<TemplateRecord>>;

    /// The tenant's templates (every tenant's for `None`), each at its
    /// latest version, by tenant and name.
    async fn list_templates(&self, tenant: Option<&str>) -> Result<Vec<TemplateRecord>>;

    /// Removes every version of the tenant's template `name`, unless a
    /// sandbox of the tenant that is not DELETED was made from it and `force`
    /// is false (its warm pool, which is no tenant's, does not count).
    async fn delete_template(
        &self,
        tenant: &str,
        name: &str,
        force: bool,
    ) -> Result<TemplateRemoval>;

    /// The greatest revision written so far (0 when none).
    async fn latest_revision(&self) -> Result<i64>;
}
