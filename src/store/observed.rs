//! [`ObservedStore`]: any store, with each operation run in a `store` span
//! (a child of the call that asked, in logs and traces) and each failure
//! of the database itself counted in [`Metrics`]; while the database is
//! known to be down ([`DatabaseHealth`]) operations fail at once with
//! UNAVAILABLE instead of waiting on connections that cannot be made.
//! Answers otherwise pass through unchanged.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tracing::Instrument;

use super::contract::{
    ApiKey, EventQuery, SandboxQuery, Store, TemplateRemoval, VolumeRecord, VolumeRemoval,
};
use crate::error::{Error, ErrorKind, Result};
use crate::sandbox::{EventType, Sandbox, SandboxEvent, SandboxState, TemplateRecord};
use crate::telemetry::Metrics;

/// Whether the database answered its last health check, and if not, since
/// when and why. Whoever checks (the server, every second) says so here.
#[derive(Debug, Default)]
pub struct DatabaseHealth {
    down: Mutex<Option<(Instant, String)>>,
}

impl DatabaseHealth {
    /// Records a check's outcome; returns whether that changed the state
    /// (up to down, or down to up).
    pub fn record(&self, outcome: std::result::Result<(), String>) -> bool {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match (outcome, down.is_some()) {
            (Ok(()), was_down) => {
                *down = None;
                was_down
            }
            (Err(reason), was_down) => {
                if !was_down {
                    *down = Some((Instant::now(), reason));
                }
                !was_down
            }
        }
    }

    /// Why the database is down, when it is.
    fn down(&self) -> Option<Error> {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        down.as_ref().map(|(since, reason)| {
            Error::unavailable(format!(
                "the database is not available (for {}s now: {reason}); calls fail at once until \
                 it answers again",
                since.elapsed().as_secs()
            ))
        })
    }
}

/// A store whose operations are traced and whose failures are counted.
pub struct ObservedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    health: Arc<DatabaseHealth>,
}

impl ObservedStore {
    /// `inner`, observed into `metrics`, failing fast while `health` says
    /// the database is down.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>, health: Arc<DatabaseHealth>) -> Self {
        Self {
            inner,
            metrics,
            health,
        }
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        if let Some(down) = self.health.down() {
            self.metrics.store_failed(operation);
            return Err(down);
        }
        let outcome = call
            .instrument(tracing::info_span!(
                "store",
                otel.name = format_args!("store.{operation}")
            ))
            .await;
        if let Err(error) = &outcome
            && failed_in_the_database(error.kind())
        {
            self.metrics.store_failed(operation);
        }
        outcome
    }
}

/// Whether an error of `kind` is the database failing, not an answer (a
/// taken name is ALREADY_EXISTS by design).
fn failed_in_the_database(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Unavailable | ErrorKind::Internal | ErrorKind::DeadlineExceeded
    )
}

#[async_trait]
impl Store for ObservedStore {
    async fn store_id(&self) -> Result<String> {
        self.run("store_id", self.inner.store_id()).await
    }

    async fn shared_secret(&self, name: &str) -> Result<String> {
        self.run("shared_secret", self.inner.shared_secret(name))
            .await
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        self.run("insert_api_key", self.inner.insert_api_key(key))
            .await
    }

    async fn api_key_by_hash(&self, secret_sha256: &str) -> Result<Option<ApiKey>> {
        self.run("api_key_by_hash", self.inner.api_key_by_hash(secret_sha256))
            .await
    }

    async fn list_api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
        self.run("list_api_keys", self.inner.list_api_keys(tenant))
            .await
    }

    async fn revoke_api_key(&self, id: &str, at: SystemTime) -> Result<bool> {
        self.run("revoke_api_key", self.inner.revoke_api_key(id, at))
            .await
    }

    async fn insert_sandbox(&self, sandbox: &Sandbox) -> Result<Sandbox> {
        self.run("insert_sandbox", self.inner.insert_sandbox(sandbox))
            .await
    }

    async fn update_sandbox(
        &self,
        sandbox: &Sandbox,
        expected_revision: i64,
        event_type: EventType,
    ) -> Result<Option<Sandbox>> {
        self.run(
            "update_sandbox",
            self.inner
                .update_sandbox(sandbox, expected_revision, event_type),
        )
        .await
    }

    async fn get_sandbox(&self, tenant: &str, id: &str) -> Result<Option<Sandbox>> {
        self.run("get_sandbox", self.inner.get_sandbox(tenant, id))
            .await
    }

    async fn get_sandbox_of_any_tenant(&self, id: &str) -> Result<Option<Sandbox>> {
        self.run(
            "get_sandbox_of_any_tenant",
            self.inner.get_sandbox_of_any_tenant(id),
        )
        .await
    }

    async fn find_by_name(&self, tenant: &str, name: &str) -> Result<Option<Sandbox>> {
        self.run("find_by_name", self.inner.find_by_name(tenant, name))
            .await
    }

    async fn find_by_request_id(&self, tenant: &str, request_id: &str) -> Result<Option<Sandbox>> {
        self.run(
            "find_by_request_id",
            self.inner.find_by_request_id(tenant, request_id),
        )
        .await
    }

    async fn list_sandboxes(&self, query: &SandboxQuery) -> Result<Vec<Sandbox>> {
        self.run("list_sandboxes", self.inner.list_sandboxes(query))
            .await
    }

    async fn list_due(&self, now: SystemTime, limit: usize) -> Result<Vec<Sandbox>> {
        self.run("list_due", self.inner.list_due(now, limit)).await
    }

    async fn record_activity(&self, id: &str, at: SystemTime) -> Result<()> {
        self.run("record_activity", self.inner.record_activity(id, at))
            .await
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<SandboxEvent>> {
        self.run("list_events", self.inner.list_events(query)).await
    }

    async fn census(&self) -> Result<Vec<(String, SandboxState, u64)>> {
        self.run("census", self.inner.census()).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.run("acquire_lease", self.inner.acquire_lease(name, holder, ttl))
            .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.run("release_lease", self.inner.release_lease(name, holder))
            .await
    }

    async fn insert_volume(&self, volume: &VolumeRecord) -> Result<()> {
        self.run("insert_volume", self.inner.insert_volume(volume))
            .await
    }

    async fn get_volume(&self, tenant: &str, name: &str) -> Result<Option<VolumeRecord>> {
        self.run("get_volume", self.inner.get_volume(tenant, name))
            .await
    }

    async fn list_volumes(&self, tenant: &str) -> Result<Vec<VolumeRecord>> {
        self.run("list_volumes", self.inner.list_volumes(tenant))
            .await
    }

    async fn volume_users(&self, volume_id: &str) -> Result<Vec<String>> {
        self.run("volume_users", self.inner.volume_users(volume_id))
            .await
    }

    async fn delete_volume(&self, tenant: &str, name: &str) -> Result<VolumeRemoval> {
        self.run("delete_volume", self.inner.delete_volume(tenant, name))
            .await
    }

    async fn insert_template(&self, template: &TemplateRecord) -> Result<()> {
        self.run("insert_template", self.inner.insert_template(template))
            .await
    }

    async fn get_template(
        &self,
        tenant: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<TemplateRecord>> {
        self.run(
            "get_template",
            self.inner.get_template(tenant, name, version),
        )
        .await
    }

    async fn list_templates(&self, tenant: Option<&str>) -> Result<Vec<TemplateRecord>> {
        self.run("list_templates", self.inner.list_templates(tenant))
            .await
    }

    async fn delete_template(
        &self,
        tenant: &str,
        name: &str,
        force: bool,
    ) -> Result<TemplateRemoval> {
        self.run(
            "delete_template",
            self.inner.delete_template(tenant, name, force),
        )
        .await
    }

    async fn latest_revision(&self) -> Result<i64> {
        self.run("latest_revision", self.inner.latest_revision())
            .await
    }
}
