//! [`Store`] on SQL: SQLite or Postgres through sqlx's `Any` driver, so that
//! both backends run the very same queries (numbered `$n` parameters, which
//! both accept) and differ only in migrations and in how a write transaction
//! begins.

mod connect;
mod errors;
mod leases;
mod query;
mod rows;
mod templates;
mod volumes;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::contract::{
    ApiKey, EventQuery, SandboxQuery, Store, TemplateRemoval, VolumeRecord, VolumeRemoval,
};
use crate::clock;
use crate::error::{Error, Result};
use crate::sandbox::selector::Requirement;
use crate::sandbox::{EventType, Sandbox, SandboxEvent, SandboxState, TemplateRecord};
use errors::db_error;
use query::{
    Bind, QueryText, insert_event, insert_mounts, limit_value, record_template_use, replace_labels,
};
use rows::{Snapshot, api_key_from_row, from_json, idle_timeout_millis, sandbox_from_row, to_json};

/// The SQL dialect behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// A [`Store`] on SQLite or Postgres.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
}

const SANDBOX_COLUMNS: &str = "id, tenant, name, provider, provider_ref, state, state_reason, \
     spec, labels, metadata, request_id, request_fingerprint, created_at, updated_at, \
     started_at, expires_at, last_activity_at, revision, public_ports";

impl SqlStore {
    /// The tenant's one sandbox matching `condition`, which compares a
    /// column with `$2` (`$1` is the tenant).
    async fn find_one(
        &self,
        condition: &str,
        tenant: &str,
        value: &str,
    ) -> Result<Option<Sandbox>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE tenant = $1 AND {condition}"
        )))
        .bind(tenant)
        .bind(value)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(sandbox_from_row)
        .transpose()
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn insert_sandbox(&self, sandbox: &Sandbox) -> Result<Sandbox> {
        let mut tx = self.begin_write().await?;
        let revision = insert_event(&mut tx, sandbox, EventType::Created).await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO sandboxes ({SANDBOX_COLUMNS}, idle_timeout_ms) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
             $20)"
        )))
        .bind(&sandbox.id)
        .bind(&sandbox.tenant)
        .bind(&sandbox.name)
        .bind(&sandbox.provider)
        .bind(&sandbox.provider_ref)
        .bind(sandbox.state.as_str())
        .bind(&sandbox.state_reason)
        .bind(to_json(&sandbox.spec)?)
        .bind(to_json(&sandbox.labels)?)
        .bind(to_json(&sandbox.metadata)?)
        .bind(&sandbox.request_id)
        .bind(&sandbox.request_fingerprint)
        .bind(clock::to_millis(sandbox.created_at))
        .bind(clock::to_millis(sandbox.updated_at))
        .bind(sandbox.started_at.map(clock::to_millis))
        .bind(sandbox.expires_at.map(clock::to_millis))
        .bind(clock::to_millis(sandbox.last_activity_at))
        .bind(revision)
        .bind(to_json(&sandbox.public_ports)?)
        .bind(idle_timeout_millis(sandbox))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        replace_labels(&mut tx, sandbox).await?;
        insert_mounts(&mut tx, sandbox).await?;
        record_template_use(&mut tx, sandbox).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Sandbox {
            revision,
            ..sandbox.clone()
        })
    }

    async fn update_sandbox(
        &self,
        sandbox: &Sandbox,
        expected_revision: i64,
        event_type: EventType,
    ) -> Result<Option<Sandbox>> {
        let mut tx = self.begin_write().await?;
        let revision = insert_event(&mut tx, sandbox, event_type).await?;
        let updated = sqlx::query(
            "UPDATE sandboxes SET name = $1, provider_ref = $2, state = $3, state_reason = $4, \
             labels = $5, metadata = $6, updated_at = $7, started_at = $8, expires_at = $9, \
             last_activity_at = $10, revision = $11, public_ports = $12, tenant = $13, \
             spec = $14, request_id = $15, request_fingerprint = $16, created_at = $17, \
             idle_timeout_ms = $18 \
             WHERE id = $19 AND revision = $20",
        )
        .bind(&sandbox.name)
        .bind(&sandbox.provider_ref)
        .bind(sandbox.state.as_str())
        .bind(&sandbox.state_reason)
        .bind(to_json(&sandbox.labels)?)
        .bind(to_json(&sandbox.metadata)?)
        .bind(clock::to_millis(sandbox.updated_at))
        .bind(sandbox.started_at.map(clock::to_millis))
        .bind(sandbox.expires_at.map(clock::to_millis))
        .bind(clock::to_millis(sandbox.last_activity_at))
        .bind(revision)
        .bind(to_json(&sandbox.public_ports)?)
        .bind(&sandbox.tenant)
        .bind(to_json(&sandbox.spec)?)
        .bind(&sandbox.request_id)
        .bind(&sandbox.request_fingerprint)
        .bind(clock::to_millis(sandbox.created_at))
        .bind(idle_timeout_millis(sandbox))
        .bind(&sandbox.id)
        .bind(expected_revision)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if updated.rows_affected() == 0 {
            tx.rollback().await.map_err(db_error)?;
            return Ok(None);
        }
        replace_labels(&mut tx, sandbox).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(Sandbox {
            revision,
            ..sandbox.clone()
        }))
    }

    async fn get_sandbox(&self, tenant: &str, id: &str) -> Result<Option<Sandbox>> {
        self.find_one("id = $2", tenant, id).await
    }

    async fn get_sandbox_of_any_tenant(&self, id: &str) -> Result<Option<Sandbox>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(sandbox_from_row)
        .transpose()
    }

    async fn find_by_name(&self, tenant: &str, name: &str) -> Result<Option<Sandbox>> {
        self.find_one("name = $2 AND state <> 'DELETED'", tenant, name)
            .await
    }

    async fn find_by_request_id(&self, tenant: &str, request_id: &str) -> Result<Option<Sandbox>> {
        self.find_one("request_id = $2", tenant, request_id).await
    }

    async fn list_sandboxes(&self, query: &SandboxQuery) -> Result<Vec<Sandbox>> {
        let mut sql = QueryText::new(&format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes s WHERE 1 = 1"
        ));
        if let Some(tenant) = &query.tenant {
            sql.push(" AND s.tenant = ")
                .bind(Bind::Text(tenant.clone()));
        }
        if !query.states.is_empty() {
            sql.push(" AND s.state IN (");
            for (i, state) in query.states.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(Bind::Text(state.as_str().to_owned()));
            }
            sql.push(")");
        }
        for requirement in &query.selector.requirements {
            let (negate, key, value) = match requirement {
                Requirement::Equals(k, v) => (false, k, Some(v)),
                Requirement::NotEquals(k, v) => (true, k, Some(v)),
                Requirement::Exists(k) => (false, k, None),
                Requirement::NotExists(k) => (true, k, None),
            };
            sql.push(if negate {
                " AND NOT EXISTS"
            } else {
                " AND EXISTS"
            })
            .push(" (SELECT 1 FROM sandbox_labels l WHERE l.sandbox_id = s.id AND l.key = ")
            .bind(Bind::Text(key.clone()));
            if let Some(value) = value {
                sql.push(" AND l.value = ").bind(Bind::Text(value.clone()));
            }
            sql.push(")");
        }
        if let Some(before) = &query.before_id {
            sql.push(" AND s.id < ").bind(Bind::Text(before.clone()));
        }
        sql.push(" ORDER BY s.id DESC LIMIT ")
            .bind(Bind::Int(limit_value(query.limit)));
        sql.fetch_all(&self.pool)
            .await?
            .iter()
            .map(sandbox_from_row)
            .collect()
    }

    async fn list_due(&self, now: SystemTime, limit: usize) -> Result<Vec<Sandbox>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE \
             (expires_at <= $1 AND state IN ('RUNNING', 'STOPPED', 'FAILED')) \
             OR (state = 'RUNNING' AND idle_timeout_ms IS NOT NULL \
                 AND last_activity_at + idle_timeout_ms <= $1) \
             ORDER BY id LIMIT $2"
        )))
        .bind(clock::to_millis(now))
        .bind(limit_value(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(sandbox_from_row)
        .collect()
    }

    async fn record_activity(&self, id: &str, at: SystemTime) -> Result<()> {
        sqlx::query(
            "UPDATE sandboxes SET last_activity_at = $1 WHERE id = $2 AND last_activity_at < $1",
        )
        .bind(clock::to_millis(at))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<SandboxEvent>> {
        let mut sql = QueryText::new(
            "SELECT revision, event_type, occurred_at, snapshot FROM sandbox_events WHERE revision > ",
        );
        sql.bind(Bind::Int(query.after_revision));
        if let Some(tenant) = &query.tenant {
            sql.push(" AND tenant = ").bind(Bind::Text(tenant.clone()));
        }
        if let Some(sandbox_id) = &query.sandbox_id {
            sql.push(" AND sandbox_id = ")
                .bind(Bind::Text(sandbox_id.clone()));
        }
        sql.push(" ORDER BY revision LIMIT ")
            .bind(Bind::Int(limit_value(query.limit)));
        let rows = sql.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let revision: i64 = row.try_get("revision").map_err(db_error)?;
                let event_type: String = row.try_get("event_type").map_err(db_error)?;
                let occurred_at: i64 = row.try_get("occurred_at").map_err(db_error)?;
                let snapshot: String = row.try_get("snapshot").map_err(db_error)?;
                Ok(SandboxEvent {
                    revision,
                    event_type: EventType::parse(&event_type).ok_or_else(|| {
                        Error::internal("reading an event", format!("unknown type {event_type:?}"))
                    })?,
                    time: clock::from_millis(occurred_at),
                    sandbox: from_json::<Snapshot>("snapshot", &snapshot)?
                        .into_sandbox(revision)?,
                })
            })
            .collect()
    }

    async fn store_id(&self) -> Result<String> {
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        // Racing servers may both insert; one row wins and both read it.
        sqlx::query(
            "INSERT INTO store_identity (singleton, store_id) VALUES (1, $1) \
             ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(&fresh)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        let row = sqlx::query("SELECT store_id FROM store_identity WHERE singleton = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        row.try_get::<String, _>(0).map_err(db_error)
    }

    async fn shared_secret(&self, name: &str) -> Result<String> {
        let fresh = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        // As for the store's id: racing servers may both insert; one wins.
        sqlx::query(
            "INSERT INTO shared_secrets (name, secret) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(&fresh)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        let row = sqlx::query("SELECT secret FROM shared_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        row.try_get::<String, _>(0).map_err(db_error)
    }

    async fn insert_api_key(&self, key: &ApiKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, tenant, secret_sha256, description, created_at, \
             revoked_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.tenant)
        .bind(&key.secret_sha256)
        .bind(&key.description)
        .bind(clock::to_millis(key.created_at))
        .bind(key.revoked_at.map(clock::to_millis))
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::already_exists(format!("API key {} already exists", key.id))
            }
            _ => db_error(e),
        })?;
        Ok(())
    }

    async fn api_key_by_hash(&self, secret_sha256: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT id, tenant, secret_sha256, description, created_at, revoked_at \
             FROM api_keys WHERE secret_sha256 = $1",
        )
        .bind(secret_sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|row| api_key_from_row(&row)).transpose()
    }

    async fn list_api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, tenant, secret_sha256, description, created_at, revoked_at \
             FROM api_keys WHERE ($1 = '' OR tenant = $1) ORDER BY created_at, id",
        )
        .bind(tenant.unwrap_or(""))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: &str, at: SystemTime) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
                .bind(id)
                .bind(clock::to_millis(at))
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn census(&self) -> Result<Vec<(String, SandboxState, u64)>> {
        let rows = sqlx::query(
            "SELECT provider, state, COUNT(*) FROM sandboxes WHERE state <> 'DELETED' \
             GROUP BY provider, state ORDER BY provider, state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let provider: String = row.try_get(0).map_err(db_error)?;
                let state: String = row.try_get(1).map_err(db_error)?;
                let count: i64 = row.try_get(2).map_err(db_error)?;
                Ok((
                    provider,
                    rows::parse_state(&state)?,
                    u64::try_from(count).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        self.take_lease(name, holder, ttl).await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.end_lease(name, holder).await
    }

    async fn insert_volume(&self, volume: &VolumeRecord) -> Result<()> {
        self.write_volume(volume).await
    }

    async fn get_volume(&self, tenant: &str, name: &str) -> Result<Option<VolumeRecord>> {
        self.read_volume(tenant, name).await
    }

    async fn list_volumes(&self, tenant: &str) -> Result<Vec<VolumeRecord>> {
        self.read_volumes(tenant).await
    }

    async fn volume_users(&self, volume_id: &str) -> Result<Vec<String>> {
        self.read_volume_users(volume_id).await
    }

    async fn delete_volume(&self, tenant: &str, name: &str) -> Result<VolumeRemoval> {
        self.remove_volume(tenant, name).await
    }

    async fn insert_template(&self, template: &TemplateRecord) -> Result<()> {
        self.write_template(template).await
    }

    async fn get_template(
        &self,
        tenant: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<TemplateRecord>> {
        self.read_template(tenant, name, version).await
    }

    async fn list_templates(&self, tenant: Option<&str>) -> Result<Vec<TemplateRecord>> {
        self.read_templates(tenant).await
    }

    async fn delete_template(
        &self,
        tenant: &str,
        name: &str,
        force: bool,
    ) -> Result<TemplateRemoval> {
        self.remove_template(tenant, name, force).await
    }

    async fn latest_revision(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(revision), 0) FROM sandbox_events")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        row.try_get::<i64, _>(0).map_err(db_error)
    }
}
