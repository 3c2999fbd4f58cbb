//! Named volumes and the sandboxes that mount them.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::errors::db_error;
use crate::clock;
use crate::error::{Error, Result};
use crate::store::contract::{VolumeRecord, VolumeRemoval};

const VOLUME_COLUMNS: &str = "id, tenant, name, provider, created_at";

/// The live sandboxes mounting volume `$1`.
const USERS: &str = "SELECT s.id FROM sandbox_volumes sv JOIN sandboxes s ON s.id = sv.sandbox_id \
     WHERE sv.volume_id = $1 AND s.state <> 'DELETED' ORDER BY s.id";

fn volume_from_row(row: &AnyRow) -> Result<VolumeRecord> {
    let text = |column: &str| row.try_get::<String, _>(column).map_err(db_error);
    Ok(VolumeRecord {
        id: text("id")?,
        tenant: text("tenant")?,
        name: text("name")?,
        provider: text("provider")?,
        created_at: clock::from_millis(row.try_get::<i64, _>("created_at").map_err(db_error)?),
    })
}

impl SqlStore {
    pub(super) async fn write_volume(&self, volume: &VolumeRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO volumes (id, tenant, name, provider, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&volume.id)
        .bind(&volume.tenant)
        .bind(&volume.name)
        .bind(&volume.provider)
        .bind(clock::to_millis(volume.created_at))
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::already_exists(format!("a volume named {:?} exists already", volume.name))
            }
            _ => db_error(e),
        })?;
        Ok(())
    }

    pub(super) async fn read_volume(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<VolumeRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE tenant = $1 AND name = $2"
        )))
        .bind(tenant)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(volume_from_row)
        .transpose()
    }

    pub(super) async fn read_volumes(&self, tenant: &str) -> Result<Vec<VolumeRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE tenant = $1 ORDER BY name"
        )))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(volume_from_row)
        .collect()
    }

    pub(super) async fn read_volume_users(&self, volume_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(USERS)
            .bind(volume_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0).map_err(db_error))
            .collect()
    }

    pub(super) async fn remove_volume(&self, tenant: &str, name: &str) -> Result<VolumeRemoval> {
        // The write lock orders this with sandbox inserts: none adds a mount
        // between the check and the delete.
        let mut tx = self.begin_write().await?;
        let Some(volume) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE tenant = $1 AND name = $2"
        )))
        .bind(tenant)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(volume_from_row)
        .transpose()?
        else {
            tx.rollback().await.map_err(db_error)?;
            return Ok(VolumeRemoval::Missing);
        };
        let users: Vec<String> = sqlx::query(USERS)
            .bind(&volume.id)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?
            .iter()
            .map(|row| row.try_get::<String, _>(0).map_err(db_error))
            .collect::<Result<_>>()?;
        if !users.is_empty() {
            tx.rollback().await.map_err(db_error)?;
            return Ok(VolumeRemoval::InUse(users));
        }
        for statement in [
            "DELETE FROM sandbox_volumes WHERE volume_id = $1",
            "DELETE FROM volumes WHERE id = $1",
        ] {
            sqlx::query(statement)
                .bind(&volume.id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(VolumeRemoval::Removed(volume))
    }
}
