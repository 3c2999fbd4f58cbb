//! [`Store`] on SQL: SQLite or Postgres through sqlx's `Any` driver, so that
//! both backends run the very same queries (numbered `$n` parameters, which
//! both accept) and differ only in migrations and in how a write transaction
//! begins.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};
use tracing::info;

use super::{ApiKey, EventQuery, SandboxQuery, Store};
use crate::clock;
use crate::error::{Error, Result};
use crate::sandbox::selector::Requirement;
use crate::sandbox::{
    EventType, Labels, Metadata, Sandbox, SandboxEvent, SandboxSpec, SandboxState,
};

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
     started_at, expires_at, last_activity_at, revision";

/// Puts a SQLite database in WAL mode (readers run beside the single
/// writer), once, on one connection: the mode is kept in the file. Switching
/// takes a lock that SQLite does not wait for, so the pool's connections
/// switching at once met "database is locked"; another process switching
/// the same new file at the same moment is retried.
async fn enable_wal(options: &AnyConnectOptions) -> Result<()> {
    use sqlx::{ConnectOptions, Connection};
    let mut attempt = 1;
    loop {
        let switched = async {
            let mut conn = options.connect().await?;
            sqlx::query("PRAGMA busy_timeout = 10000")
                .execute(&mut conn)
                .await?;
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&mut conn)
                .await?;
            conn.close().await
        }
        .await;
        match switched {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 5 => {
                info!(error = %e, attempt, "switching the database to WAL again");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                attempt += 1;
            }
            Err(e) => {
                return Err(Error::unavailable(format!(
                    "cannot open the database in WAL mode: {e}"
                )));
            }
        }
    }
}

impl SqlStore {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`), applies the
    /// embedded migrations, and returns the store. A SQLite file and its
    /// parent directories are created when missing and run in WAL mode.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(Error::invalid_argument(
                "database_url",
                "must start with sqlite:// or postgres://",
            ));
        };
        if dialect == Dialect::Sqlite {
            create_sqlite_parent(url)?;
        }
        let options = AnyConnectOptions::from_str(url).map_err(|e| {
            Error::invalid_argument("database_url", format!("cannot be parsed: {e}"))
        })?;
        if dialect == Dialect::Sqlite {
            enable_wal(&options).await?;
        }
        let pool_options = match dialect {
            Dialect::Sqlite => AnyPoolOptions::new()
                .max_connections(8)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // The busy timeout makes writers queue instead of
                        // failing. WAL was set on the file before the pool.
                        for pragma in [
                            "PRAGMA busy_timeout = 10000",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                        Ok(())
                    })
                }),
            Dialect::Postgres => AnyPoolOptions::new().max_connections(16),
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| Error::unavailable(format!("cannot open the database: {e}")))?;
        let migrator = match dialect {
            Dialect::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        // Postgres migrations take an advisory lock; SQLite's do not, so two
        // processes opening a new database at once (a server and `paddock
        // keys`) can both start the same migration, and the later one fails
        // on what the first made. Running again finds it applied.
        let mut attempt = 1;
        loop {
            match migrator.run(&pool).await {
                Ok(()) => break,
                Err(e) if dialect == Dialect::Sqlite && attempt < 5 => {
                    info!(error = %e, attempt, "migrating again after a concurrent migration");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::unavailable(format!(
                        "cannot migrate the database: {e}"
                    )));
                }
            }
        }
        info!(backend = ?dialect, "state store ready");
        Ok(Self { pool, dialect })
    }

    /// The SQLite URL of a database file at `path`, created when missing.
    pub fn sqlite_url(path: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    /// Begins a transaction that writes events. Writers are serialised so
    /// that revisions become visible in the order they were numbered: a
    /// watcher that has read revision `r` never finds a later commit below it.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.dialect {
            // IMMEDIATE takes SQLite's single write lock up front, waiting
            // through busy_timeout instead of failing on upgrade.
            Dialect::Sqlite => self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(db_error),
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await.map_err(db_error)?;
                sqlx::query("LOCK TABLE sandbox_events IN SHARE ROW EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                Ok(tx)
            }
        }
    }
}

/// Creates the directory of a SQLite database file named by `url`.
fn create_sqlite_parent(url: &str) -> Result<()> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match std::path::Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::unavailable(format!(
                    "cannot create the database directory {}: {e}",
                    parent.display()
                ))
            })
        }
        _ => Ok(()),
    }
}

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

/// Classifies a database error once: a unique violation is ALREADY_EXISTS, a
/// lost connection UNAVAILABLE, the rest INTERNAL.
fn db_error(error: sqlx::Error) -> Error {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::already_exists("a sandbox with that name or request id exists already")
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => {
            Error::unavailable(format!("the state store cannot be reached: {error}"))
        }
        _ => Error::internal("using the state store", error),
    }
}

/// The record as kept inside events: everything but environment values.
#[derive(Serialize, Deserialize)]
struct Snapshot {
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
}

impl Snapshot {
    fn of(sandbox: &Sandbox) -> Self {
        let mut spec = sandbox.spec.clone();
        spec.env.values_mut().for_each(String::clear);
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
        }
    }

    fn into_sandbox(self, revision: i64) -> Result<Sandbox> {
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
            revision,
        })
    }
}

fn parse_state(name: &str) -> Result<SandboxState> {
    SandboxState::parse(name)
        .ok_or_else(|| Error::internal("reading a sandbox", format!("unknown state {name:?}")))
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal("encoding a sandbox", e))
}

fn from_json<T: for<'de> Deserialize<'de>>(column: &str, text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::internal("decoding a sandbox", format!("column {column}: {e}")))
}

fn sandbox_from_row(row: &AnyRow) -> Result<Sandbox> {
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
        revision: row.try_get::<i64, _>("revision").map_err(db_error)?,
    })
}

fn idle_timeout_millis(sandbox: &Sandbox) -> Option<i64> {
    sandbox
        .spec
        .idle_timeout
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Appends an event for `sandbox` and returns its revision.
async fn insert_event(
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

async fn replace_labels(tx: &mut sqlx::AnyConnection, sandbox: &Sandbox) -> Result<()> {
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

/// A value bound to a dynamically built query.
enum Bind {
    Text(String),
    Int(i64),
}

/// Builds a query with numbered parameters.
#[derive(Default)]
struct QueryText {
    sql: String,
    binds: Vec<Bind>,
}

impl QueryText {
    fn new(sql: &str) -> Self {
        Self {
            sql: sql.to_owned(),
            binds: Vec::new(),
        }
    }

    fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder for `value`.
    fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.sql.push_str(&format!("${}", self.binds.len()));
        self
    }

    async fn fetch_all(self, pool: &AnyPool) -> Result<Vec<AnyRow>> {
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

fn limit_value(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqlStore {
    async fn insert_sandbox(&self, sandbox: &Sandbox) -> Result<Sandbox> {
        let mut tx = self.begin_write().await?;
        let revision = insert_event(&mut tx, sandbox, EventType::Created).await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO sandboxes ({SANDBOX_COLUMNS}, idle_timeout_ms) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
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
        .bind(idle_timeout_millis(sandbox))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        replace_labels(&mut tx, sandbox).await?;
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
             last_activity_at = $10, revision = $11 WHERE id = $12 AND revision = $13",
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

    async fn latest_revision(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(revision), 0) FROM sandbox_events")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        row.try_get::<i64, _>(0).map_err(db_error)
    }
}

fn api_key_from_row(row: &AnyRow) -> Result<ApiKey> {
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
