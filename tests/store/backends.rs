//! What each backend keeps across a reopen, and URLs it refuses.

use super::*;

#[tokio::test]
async fn sqlite_state_survives_a_reopen_and_runs_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dirs/state.db");
    let url = SqlStore::sqlite_url(&path);
    let id = {
        let store = SqlStore::connect(&url).await.unwrap();
        store
            .insert_sandbox(&record(DEFAULT_TENANT, Some("durable")))
            .await
            .unwrap()
            .id
    };
    let store = SqlStore::connect(&url)
        .await
        .expect("reopen and re-migrate");
    assert!(
        store
            .get_sandbox(DEFAULT_TENANT, &id)
            .await
            .unwrap()
            .is_some(),
        "the record survived"
    );
    assert!(
        dir.path().join("nested/dirs/state.db-wal").exists(),
        "SQLite runs in WAL mode"
    );
}

#[tokio::test]
async fn unknown_database_schemes_are_refused() {
    let error = SqlStore::connect("mysql://localhost/db").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn postgres_state_survives_a_reopen() {
    let Some(url) = common::postgres::fresh_database().await else {
        return;
    };
    let id = {
        let store = SqlStore::connect(&url).await.unwrap();
        store
            .insert_sandbox(&record(DEFAULT_TENANT, Some("durable")))
            .await
            .unwrap()
            .id
    };
    let store = SqlStore::connect(&url)
        .await
        .expect("reopen and re-migrate");
    assert!(
        store
            .get_sandbox(DEFAULT_TENANT, &id)
            .await
            .unwrap()
            .is_some()
    );
}
