//! A real Postgres for tests: `PADDOCK_TEST_POSTGRES_URL` names a server
//! (the test script starts a throw-away cluster and sets it); each test gets
//! a database of its own.
//!
//! Without the variable the Postgres tests are skipped with a loud notice,
//! except under `CI=true`, where they fail: CI must never skip them.

use sqlx::Connection;

/// The variable naming the Postgres server for tests.
pub const URL_VARIABLE: &str = "PADDOCK_TEST_POSTGRES_URL";

/// The URL of a new, empty database, or `None` when no server is configured
/// outside CI.
pub async fn fresh_database() -> Option<String> {
    let Ok(admin_url) = std::env::var(URL_VARIABLE) else {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !in_ci,
            "{URL_VARIABLE} is not set, and CI=true forbids skipping the Postgres tests; \
             run them through scripts/test, which starts Postgres"
        );
        eprintln!(
            "SKIPPED: Postgres test; set {URL_VARIABLE} or run scripts/test, which starts Postgres"
        );
        return None;
    };
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {URL_VARIABLE}: {e}"));
    let name = format!("paddock_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("the Postgres URL names a database");
    Some(format!("{base}/{name}"))
}
