//! Opening a store: the URL, the SQLite file and its WAL mode, the pool,
//! the embedded migrations, and how a write transaction begins on each
//! backend.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use tracing::info;

use super::errors::db_error;
use super::{Dialect, SqlStore};
use crate::error::{Error, Result};

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
                .acquire_timeout(Duration::from_secs(10))
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
            // A database that went away fails a call within 3 s rather than
            // the 10 s SQLite's writers may queue for.
            Dialect::Postgres => AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(3)),
        };
        let pool = pool_options
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
    pub(super) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
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
