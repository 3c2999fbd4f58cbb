//! Templates: every version, and which sandboxes were made from which.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::SqlStore;
use super::errors::db_error;
use super::rows::{from_json, to_json};
use crate::clock;
use crate::error::{Error, Result};
use crate::sandbox::TemplateRecord;
use crate::store::contract::TemplateRemoval;

const TEMPLATE_COLUMNS: &str = "id, tenant, name, version, spec, source, owned_image, created_at";

fn template_from_row(row: &AnyRow) -> Result<TemplateRecord> {
    let text = |column: &str| row.try_get::<String, _>(column).map_err(db_error);
    Ok(TemplateRecord {
        id: text("id")?,
        tenant: text("tenant")?,
        name: text("name")?,
        version: row.try_get::<i64, _>("version").map_err(db_error)?,
        spec: from_json("template spec", &text("spec")?)?,
        source: text("source")?,
        owned_image: row
            .try_get::<Option<String>, _>("owned_image")
            .map_err(db_error)?,
        created_at: clock::from_millis(row.try_get::<i64, _>("created_at").map_err(db_error)?),
    })
}

impl SqlStore {
    pub(super) async fn write_template(&self, template: &TemplateRecord) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO templates ({TEMPLATE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(&template.id)
        .bind(&template.tenant)
        .bind(&template.name)
        .bind(template.version)
        .bind(to_json(&template.spec)?)
        .bind(&template.source)
        .bind(&template.owned_image)
        .bind(clock::to_millis(template.created_at))
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Error::already_exists(if template.version == 1 {
                    format!("a template named {:?} exists already", template.name)
                } else {
                    format!(
                        "template {:?} has a version {} already: it changed meanwhile",
                        template.name, template.version
                    )
                })
            }
            _ => db_error(e),
        })?;
        Ok(())
    }

    pub(super) async fn read_template(
        &self,
        tenant: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<TemplateRecord>> {
        let query = match version {
            Some(version) => sqlx::query(AssertSqlSafe(format!(
                "SELECT {TEMPLATE_COLUMNS} FROM templates \
                 WHERE tenant = $1 AND name = $2 AND version = $3"
            )))
            .bind(tenant)
            .bind(name)
            .bind(version),
            None => sqlx::query(AssertSqlSafe(format!(
                "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE tenant = $1 AND name = $2 \
                 ORDER BY version DESC LIMIT 1"
            )))
            .bind(tenant)
            .bind(name),
        };
        query
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(template_from_row)
            .transpose()
    }

    pub(super) async fn read_templates(&self, tenant: Option<&str>) -> Result<Vec<TemplateRecord>> {
        let whose = if tenant.is_some() {
            "tenant = $1 AND"
        } else {
            ""
        };
        let query = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates t WHERE {whose} version = \
             (SELECT MAX(version) FROM templates l WHERE l.tenant = t.tenant AND l.name = t.name) \
             ORDER BY tenant, name"
        )));
        match tenant {
            Some(tenant) => query.bind(tenant),
            None => query,
        }
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .iter()
        .map(template_from_row)
        .collect()
    }

    pub(super) async fn remove_template(
        &self,
        tenant: &str,
        name: &str,
        force: bool,
    ) -> Result<TemplateRemoval> {
        // The write lock orders this with sandbox inserts: none is made from
        // the template between the check and the delete.
        let mut tx = self.begin_write().await?;
        let versions: Vec<TemplateRecord> = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE tenant = $1 AND name = $2 \
             ORDER BY version"
        )))
        .bind(tenant)
        .bind(name)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?
        .iter()
        .map(template_from_row)
        .collect::<Result<_>>()?;
        let Some(first) = versions.first() else {
            tx.rollback().await.map_err(db_error)?;
            return Ok(TemplateRemoval::Missing);
        };
        if !force {
            let users: Vec<String> = sqlx::query(
                "SELECT id FROM sandboxes WHERE template_id = $1 AND tenant = $2 \
                 AND state <> 'DELETED' ORDER BY id",
            )
            .bind(&first.id)
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?
            .iter()
            .map(|row| row.try_get::<String, _>(0).map_err(db_error))
            .collect::<Result<_>>()?;
            if !users.is_empty() {
                tx.rollback().await.map_err(db_error)?;
                return Ok(TemplateRemoval::InUse(users));
            }
        }
        sqlx::query("DELETE FROM templates WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(TemplateRemoval::Removed(versions))
    }
}
