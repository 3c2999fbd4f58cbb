//! Statements built at run time with their parameters, for the lists whose
//! filters vary, and the writes every change shares (its event, its labels).

use sqlx::any::AnyRow;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::errors::db_error;
use super::rows::{Snapshot, to_json};
use crate::clock;
use crate::error::{Error, Result};
use crate::sandbox::{EventType, Sandbox};

/// Appends an event for `sandbox` and returns its revision.
pub(super) async fn insert_event(
    tx: &mut sqlx::AnyConnection,
    sandbox: &Sandbox,
    event_type: EventType,
) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO sandbox_events (tenant, sandbox_id, event_type, occurred_at, snapshot) \
         VALUES ($1, $2, $3, $4, $5) RETURNING revision",
    )
    .bind(&sandbox.tenant)
    .bind(&sandbox.id)
    .bind(event_type.as_str())
    .bind(clock::to_millis(sandbox.updated_at))
    .bind(to_json(&Snapshot::of(sandbox))?)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_error)?;
    row.try_get::<i64, _>(0).map_err(db_error)
}

pub(super) async fn replace_labels(tx: &mut sqlx::AnyConnection, sandbox: &Sandbox) -> Result<()> {
    sqlx::query("DELETE FROM sandbox_labels WHERE sandbox_id = $1")
        .bind(&sandbox.id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    for (key, value) in &sandbox.labels {
        sqlx::query("INSERT INTO sandbox_labels (sandbox_id, key, value) VALUES ($1, $2, $3)")
            .bind(&sandbox.id)
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Records which volumes `sandbox` mounts, in its insert's transaction. A
/// volume deleted since the caller looked it up fails the insert.
pub(super) async fn insert_mounts(tx: &mut sqlx::AnyConnection, sandbox: &Sandbox) -> Result<()> {
    for volume in &sandbox.spec.volumes {
        if volume.volume_id.is_empty() {
            continue;
        }
        sqlx::query(
            "INSERT INTO sandbox_volumes (sandbox_id, volume_id) VALUES ($1, $2) \
             ON CONFLICT (sandbox_id, volume_id) DO NOTHING",
        )
        .bind(&sandbox.id)
        .bind(&volume.volume_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                Error::failed_precondition(format!(
                    "volumes: volume {:?} was deleted while the sandbox was being made",
                    volume.name
                ))
            }
            _ => db_error(e),
        })?;
    }
    Ok(())
}

/// Records the template `sandbox` was made from, in its insert's
/// transaction.
pub(super) async fn record_template_use(
    tx: &mut sqlx::AnyConnection,
    sandbox: &Sandbox,
) -> Result<()> {
    if let Some(template) = &sandbox.spec.template {
        sqlx::query("UPDATE sandboxes SET template_id = $1 WHERE id = $2")
            .bind(&template.id)
            .bind(&sandbox.id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// A value bound to a dynamically built query.
pub(super) enum Bind {
    Text(String),
    Int(i64),
}

/// Builds a query with numbered parameters.
#[derive(Default)]
pub(super) struct QueryText {
    sql: String,
    binds: Vec<Bind>,
}

impl QueryText {
    pub(super) fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            binds: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder for `value`.
    pub(super) fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.sql.push_str(&format!("${}", self.binds.len()));
        self
    }

    pub(super) async fn fetch_all(self, pool: &AnyPool) -> Result<Vec<AnyRow>> {
        let mut query = sqlx::query(AssertSqlSafe(self.sql));
        for value in self.binds {
            query = match value {
                Bind::Text(text) => query.bind(text),
                Bind::Int(int) => query.bind(int),
            };
        }
        query.fetch_all(pool).await.map_err(db_error)
    }
}

pub(super) fn limit_value(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
