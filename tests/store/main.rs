//! One behavioural suite for the state store, run against SQLite and against
//! a real Postgres.

#[path = "../common/mod.rs"]
mod common;

use paddock::ErrorKind;
use paddock::clock;
use paddock::ids;
use paddock::sandbox::{
    DEFAULT_TENANT, EventType, LabelSelector, Sandbox, SandboxSpec, SandboxState,
};
use paddock::store::{EventQuery, SandboxQuery, SqlStore, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A store under test and whatever keeps its backend alive.
struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let url = SqlStore::sqlite_url(&dir.path().join("state.db"));
    Some(Backend {
        store: Arc::new(SqlStore::connect(&url).await.expect("open SQLite")),
        _dir: Some(dir),
    })
}

async fn postgres() -> Option<Backend> {
    let url = common::postgres::fresh_database().await?;
    Some(Backend {
        store: Arc::new(SqlStore::connect(&url).await.expect("open Postgres")),
        _dir: None,
    })
}

/// Runs each named test function against both backends.
macro_rules! store_suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let backend = super::sqlite().await.unwrap();
                    super::$test(backend.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(backend) = super::postgres().await else { return };
                    super::$test(backend.store.clone()).await;
                }
            )*
        }
    };
}

fn record(tenant: &str, name: Option<&str>) -> Sandbox {
    let now = clock::now();
    Sandbox {
        id: ids::new_sandbox_id(),
        tenant: tenant.to_owned(),
        name: name.map(str::to_owned),
        provider: "process".into(),
        provider_ref: None,
        state: SandboxState::Pending,
        state_reason: String::new(),
        spec: SandboxSpec {
            workdir: "/workspace".into(),
            ..SandboxSpec::default()
        },
        labels: BTreeMap::new(),
        metadata: serde_json::Map::new(),
        request_id: None,
        request_fingerprint: None,
        created_at: now,
        updated_at: now,
        started_at: None,
        expires_at: None,
        last_activity_at: now,
        public_ports: Vec::new(),
        revision: 0,
    }
}

// After the macro, so that its textual scope covers them.
mod backends;
mod events;
mod keys;
mod leases;
mod ports;
mod sandboxes;
mod templates;
mod volumes;
