//! [`ObservedStore`]: any store, with each operation run in a `store` span
//! (a child of the call that asked, in logs and traces) and each failure
//! of the database itself counted in [`Metrics`]. Answers pass through
//! unchanged.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use tracing::Instrument;

use super::contract::{ApiKey, EventQuery, SandboxQuery, Store};
use crate::error::{ErrorKind, Result};
use crate::sandbox::{EventType, Sandbox, SandboxEvent, SandboxState};
use crate::telemetry::Metrics;

/// A store whose operations are traced and whose failures are counted.
pub struct ObservedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl ObservedStore {
    /// `inner`, observed into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn run<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
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

    async fn latest_revision(&self) -> Result<i64> {
        self.run("latest_revision", self.inner.latest_revision())
            .await
    }
}
