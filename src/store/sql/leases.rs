//! Leases on the database's own clock, so that servers whose clocks
//! disagree still agree on who holds one.

use std::time::Duration;

use sqlx::AssertSqlSafe;

use super::errors::db_error;
use super::{Dialect, SqlStore};
use crate::error::Result;

/// Now, in milliseconds since the Unix epoch, by the database's clock.
fn now_millis(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

impl SqlStore {
    pub(super) async fn take_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = now_millis(self.dialect);
        // One statement: a new lease, a renewal, or a takeover of an expired
        // one; a live lease of another holder is left alone (no row).
        let taken = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= {now}"
        )))
        .bind(name)
        .bind(holder)
        .bind(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(taken.rows_affected() == 1)
    }

    pub(super) async fn end_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
