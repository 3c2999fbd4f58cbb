//! Records as rows: a sandbox's columns and JSON fields, and an API key's.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::errors::db_error;
use crate::clock;
use crate::error::{Error, Result};
use crate::sandbox::{Labels, Metadata, Sandbox, SandboxSpec, SandboxState};
use crate::store::contract::ApiKey;

/// The record as kept inside events: everything but environment values.
#[derive(Serialize, Deserialize)]
pub(super) struct Snapshot {
    id: String,
    tenant: String,
    name: Option<String>,
    provider: String,
    provider_ref: Option<String>,
    state: String,
    state_reason: String,
    spec: SandboxSpec,
    labels: Labels,
    metadata: Metadata,
    request_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    started_at: Option<i64>,
    expires_at: Option<i64>,
    last_activity_at: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    public_ports: Vec<u16>,
}

impl Snapshot {
    pub(super) fn of(sandbox: &Sandbox) -> Self {
        let mut spec = sandbox.spec.clone();
        spec.env.values_mut().for_each(String::clear);
        spec.command_env.values_mut().for_each(String::clear);
        Self {
            id: sandbox.id.clone(),
            tenant: sandbox.tenant.clone(),
            name: sandbox.name.clone(),
            provider: sandbox.provider.clone(),
            provider_ref: sandbox.provider_ref.clone(),
            state: sandbox.state.as_str().to_owned(),
            state_reason: sandbox.state_reason.clone(),
            spec,
            labels: sandbox.labels.clone(),
            metadata: sandbox.metadata.clone(),
            request_id: sandbox.request_id.clone(),
            created_at: clock::to_millis(sandbox.created_at),
            updated_at: clock::to_millis(sandbox.updated_at),
            started_at: sandbox.started_at.map(clock::to_millis),
            expires_at: sandbox.expires_at.map(clock::to_millis),
            last_activity_at: clock::to_millis(sandbox.last_activity_at),
            public_ports: sandbox.public_ports.clone(),
        }
    }

    pub(super) fn into_sandbox(self, revision: i64) -> Result<Sandbox> {
        Ok(Sandbox {
            state: parse_state(&self.state)?,
            id: self.id,
            tenant: self.tenant,
            name: self.name,
            provider: self.provider,
            provider_ref: self.provider_ref,
            state_reason: self.state_reason,
            spec: self.spec,
            labels: self.labels,
            metadata: self.metadata,
            request_id: self.request_id,
            request_fingerprint: None,
            created_at: clock::from_millis(self.created_at),
            updated_at: clock::from_millis(self.updated_at),
            started_at: self.started_at.map(clock::from_millis),
            expires_at: self.expires_at.map(clock::from_millis),
            last_activity_at: clock::from_millis(self.last_activity_at),
            public_ports: self.public_ports,
            revision,
        })
    }
}

pub(super) fn parse_state(name: &str) -> Result<SandboxState> {
    SandboxState::parse(name)
        .ok_or_else(|| Error::internal("reading a sandbox", format!("unknown state {name:?}")))
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal("encoding a sandbox", e))
}

pub(super) fn from_json<T: for<'de> Deserialize<'de>>(column: &str, text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::internal("decoding a sandbox", format!("column {column}: {e}")))
}

pub(super) fn sandbox_from_row(row: &AnyRow) -> Result<Sandbox> {
    let get_text = |column: &str| row.try_get::<String, _>(column).map_err(db_error);
    let get_opt_text = |column: &str| row.try_get::<Option<String>, _>(column).map_err(db_error);
    let get_time = |column: &str| {
        row.try_get::<i64, _>(column)
            .map(clock::from_millis)
            .map_err(db_error)
    };
    let get_opt_time = |column: &str| {
        row.try_get::<Option<i64>, _>(column)
            .map(|v| v.map(clock::from_millis))
            .map_err(db_error)
    };
    Ok(Sandbox {
        id: get_text("id")?,
        tenant: get_text("tenant")?,
        name: get_opt_text("name")?,
        provider: get_text("provider")?,
        provider_ref: get_opt_text("provider_ref")?,
        state: parse_state(&get_text("state")?)?,
        state_reason: get_text("state_reason")?,
        spec: from_json("spec", &get_text("spec")?)?,
        labels: from_json("labels", &get_text("labels")?)?,
        metadata: from_json("metadata", &get_text("metadata")?)?,
        request_id: get_opt_text("request_id")?,
        request_fingerprint: get_opt_text("request_fingerprint")?,
        created_at: get_time("created_at")?,
        updated_at: get_time("updated_at")?,
        started_at: get_opt_time("started_at")?,
        expires_at: get_opt_time("expires_at")?,
        last_activity_at: get_time("last_activity_at")?,
        public_ports: from_json("public_ports", &get_text("public_ports")?)?,
        revision: row.try_get::<i64, _>("revision").map_err(db_error)?,
    })
}

pub(super) fn idle_timeout_millis(sandbox: &Sandbox) -> Option<i64> {
    sandbox
        .spec
        .idle_timeout
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn api_key_from_row(row: &AnyRow) -> Result<ApiKey> {
    let text = |column: &str| row.try_get::<String, _>(column).map_err(db_error);
    Ok(ApiKey {
        id: text("id")?,
        tenant: text("tenant")?,
        secret_sha256: text("secret_sha256")?,
        description: text("description")?,
        created_at: clock::from_millis(row.try_get::<i64, _>("created_at").map_err(db_error)?),
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")
            .map_err(db_error)?
            .map(clock::from_millis),
    })
}
