//! One behavioural suite for the state store, run against SQLite and against
//! a real Postgres.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use paddock::ErrorKind;
use paddock::clock;
use paddock::ids;
use paddock::sandbox::{
    DEFAULT_TENANT, EventType, LabelSelector, Sandbox, SandboxSpec, SandboxState,
};
use paddock::store::{EventQuery, SandboxQuery, SqlStore, Store};

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

store_suite!(
    inserts_and_reads_back_every_field,
    names_are_unique_among_live_sandboxes_only,
    request_ids_are_unique_per_tenant,
    updates_are_compare_and_set,
    events_are_ordered_scoped_and_blank_env_values,
    lists_filter_by_tenant_state_and_labels_and_page,
    due_sandboxes_are_expired_or_idle,
    activity_only_moves_forward,
    concurrent_writers_never_lose_an_update,
    api_keys_are_found_by_hash_listed_and_revoked_once,
);

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
        revision: 0,
    }
}

async fn inserts_and_reads_back_every_field(store: Arc<dyn Store>) {
    let mut sandbox = record(DEFAULT_TENANT, Some("full"));
    sandbox.provider_ref = Some("/somewhere".into());
    sandbox.state_reason = "because".into();
    sandbox.spec.image = Some("busybox:latest".into());
    sandbox.spec.env = BTreeMap::from([("TOKEN".into(), "secret".into())]);
    sandbox.spec.idle_timeout = Some(Duration::from_secs(90));
    sandbox.spec.resources.memory_bytes = Some(1 << 30);
    sandbox.labels = BTreeMap::from([("team".into(), "ml".into())]);
    sandbox.metadata = serde_json::json!({"purpose": "eval", "n": [1, 2.5, null]})
        .as_object()
        .unwrap()
        .clone();
    sandbox.request_id = Some("req-1".into());
    sandbox.request_fingerprint = Some("abc".into());
    sandbox.started_at = Some(clock::now());
    sandbox.expires_at = Some(clock::now() + Duration::from_secs(3600));

    let inserted = store.insert_sandbox(&sandbox).await.unwrap();
    assert!(inserted.revision > 0);
    let read = store
        .get_sandbox(DEFAULT_TENANT, &sandbox.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, inserted);
    assert_eq!(
        read.spec.env["TOKEN"], "secret",
        "the record keeps env values"
    );

    assert_eq!(
        store.find_by_name(DEFAULT_TENANT, "full").await.unwrap(),
        Some(inserted.clone())
    );
    assert_eq!(
        store
            .find_by_request_id(DEFAULT_TENANT, "req-1")
            .await
            .unwrap(),
        Some(inserted.clone())
    );
    assert_eq!(store.get_sandbox("other", &sandbox.id).await.unwrap(), None);
    assert_eq!(
        store
            .get_sandbox(DEFAULT_TENANT, &ids::new_sandbox_id())
            .await
            .unwrap(),
        None
    );
}

async fn names_are_unique_among_live_sandboxes_only(store: Arc<dyn Store>) {
    let first = store
        .insert_sandbox(&record(DEFAULT_TENANT, Some("web")))
        .await
        .unwrap();
    let error = store
        .insert_sandbox(&record(DEFAULT_TENANT, Some("web")))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::AlreadyExists);

    // Another tenant may use the name.
    store
        .insert_sandbox(&record("tenant-b", Some("web")))
        .await
        .unwrap();

    // Once the first is DELETED, the name is free.
    let mut deleted = first.clone();
    deleted.state = SandboxState::Deleted;
    store
        .update_sandbox(&deleted, first.revision, EventType::StateChanged)
        .await
        .unwrap()
        .unwrap();
    let second = store
        .insert_sandbox(&record(DEFAULT_TENANT, Some("web")))
        .await
        .unwrap();
    assert_eq!(
        store
            .find_by_name(DEFAULT_TENANT, "web")
            .await
            .unwrap()
            .map(|s| s.id),
        Some(second.id)
    );
}

async fn request_ids_are_unique_per_tenant(store: Arc<dyn Store>) {
    let mut a = record(DEFAULT_TENANT, None);
    a.request_id = Some("same".into());
    store.insert_sandbox(&a).await.unwrap();
    let mut b = record(DEFAULT_TENANT, None);
    b.request_id = Some("same".into());
    assert_eq!(
        store.insert_sandbox(&b).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let mut c = record("tenant-b", None);
    c.request_id = Some("same".into());
    store.insert_sandbox(&c).await.unwrap();
    // A failed insert leaves nothing, not even an event.
    let events = store
        .list_events(&EventQuery {
            sandbox_id: Some(b.id.clone()),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert!(events.is_empty());
}

async fn updates_are_compare_and_set(store: Arc<dyn Store>) {
    let inserted = store
        .insert_sandbox(&record(DEFAULT_TENANT, None))
        .await
        .unwrap();
    let mut starting = inserted.clone();
    starting.state = SandboxState::Starting;
    let saved = store
        .update_sandbox(&starting, inserted.revision, EventType::StateChanged)
        .await
        .unwrap()
        .expect("the expected revision matches");
    assert!(saved.revision > inserted.revision);

    // A writer holding the old revision loses and writes nothing.
    let mut stale = inserted.clone();
    stale.state = SandboxState::Failed;
    assert_eq!(
        store
            .update_sandbox(&stale, inserted.revision, EventType::StateChanged)
            .await
            .unwrap(),
        None
    );
    let current = store
        .get_sandbox(DEFAULT_TENANT, &inserted.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current, saved);
    assert_eq!(store.latest_revision().await.unwrap(), saved.revision);

    // Updating a missing record is the same "lost" answer.
    let ghost = record(DEFAULT_TENANT, None);
    assert_eq!(
        store
            .update_sandbox(&ghost, 1, EventType::Updated)
            .await
            .unwrap(),
        None
    );
}

async fn events_are_ordered_scoped_and_blank_env_values(store: Arc<dyn Store>) {
    let mut a = record(DEFAULT_TENANT, None);
    a.spec.env = BTreeMap::from([("SECRET".into(), "value".into())]);
    let a = store.insert_sandbox(&a).await.unwrap();
    let b = store
        .insert_sandbox(&record("tenant-b", None))
        .await
        .unwrap();
    let mut running = a.clone();
    running.state = SandboxState::Running;
    let running = store
        .update_sandbox(&running, a.revision, EventType::StateChanged)
        .await
        .unwrap()
        .unwrap();

    let all = store
        .list_events(&EventQuery {
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    let revisions: Vec<_> = all.iter().map(|e| e.revision).collect();
    assert_eq!(revisions, vec![a.revision, b.revision, running.revision]);
    assert_eq!(all[0].event_type, EventType::Created);
    assert_eq!(all[2].event_type, EventType::StateChanged);
    assert_eq!(all[2].sandbox.state, SandboxState::Running);
    assert_eq!(all[2].sandbox.revision, running.revision);
    assert_eq!(
        all[0].sandbox.spec.env.get("SECRET").map(String::as_str),
        Some(""),
        "events keep env names but never values"
    );

    let tenant_a = store
        .list_events(&EventQuery {
            tenant: Some(DEFAULT_TENANT.into()),
            after_revision: a.revision,
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(tenant_a.len(), 1);
    assert_eq!(tenant_a[0].revision, running.revision);

    let only_b = store
        .list_events(&EventQuery {
            sandbox_id: Some(b.id.clone()),
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(only_b.len(), 1);

    let limited = store
        .list_events(&EventQuery {
            limit: 2,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
}

async fn lists_filter_by_tenant_state_and_labels_and_page(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut sandbox = record(DEFAULT_TENANT, None);
        sandbox.labels = BTreeMap::from([
            ("team".into(), if i % 2 == 0 { "ml" } else { "web" }.into()),
            ("n".into(), i.to_string()),
        ]);
        if i == 6 {
            sandbox.labels.insert("gpu".into(), String::new());
            sandbox.state = SandboxState::Running;
        }
        ids.push(store.insert_sandbox(&sandbox).await.unwrap().id);
    }
    store
        .insert_sandbox(&record("tenant-b", None))
        .await
        .unwrap();

    let query = |selector: &str, states: Vec<SandboxState>| SandboxQuery {
        tenant: Some(DEFAULT_TENANT.into()),
        states,
        selector: LabelSelector::parse("s", selector).unwrap(),
        before_id: None,
        limit: 100,
    };
    let count = |selector: &'static str, states: Vec<SandboxState>| {
        let store = store.clone();
        let q = query(selector, states);
        async move { store.list_sandboxes(&q).await.unwrap().len() }
    };
    assert_eq!(count("", vec![]).await, 7);
    assert_eq!(count("team=ml", vec![]).await, 4);
    assert_eq!(count("team!=ml", vec![]).await, 3);
    assert_eq!(count("gpu", vec![]).await, 1);
    assert_eq!(count("!gpu", vec![]).await, 6);
    assert_eq!(count("team=ml,gpu", vec![]).await, 1);
    assert_eq!(count("", vec![SandboxState::Running]).await, 1);
    assert_eq!(
        count("", vec![SandboxState::Pending, SandboxState::Running]).await,
        7
    );

    let everyone = store
        .list_sandboxes(&SandboxQuery {
            tenant: None,
            limit: 100,
            ..SandboxQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(everyone.len(), 8);

    // Newest first, in pages cut by id.
    let mut pages = Vec::new();
    let mut before_id = None;
    loop {
        let page = store
            .list_sandboxes(&SandboxQuery {
                before_id: before_id.clone(),
                limit: 3,
                ..query("", vec![])
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        before_id = page.last().map(|s| s.id.clone());
        pages.extend(page.into_iter().map(|s| s.id));
    }
    ids.reverse();
    assert_eq!(pages, ids);
}

async fn due_sandboxes_are_expired_or_idle(store: Arc<dyn Store>) {
    let now = clock::now();
    let mut expired = record(DEFAULT_TENANT, None);
    expired.state = SandboxState::Running;
    expired.expires_at = Some(now - Duration::from_secs(1));
    let expired = store.insert_sandbox(&expired).await.unwrap();

    let mut idle = record(DEFAULT_TENANT, None);
    idle.state = SandboxState::Running;
    idle.spec.idle_timeout = Some(Duration::from_secs(60));
    idle.last_activity_at = now - Duration::from_secs(61);
    let idle = store.insert_sandbox(&idle).await.unwrap();

    let mut busy = record(DEFAULT_TENANT, None);
    busy.state = SandboxState::Running;
    busy.spec.idle_timeout = Some(Duration::from_secs(60));
    busy.expires_at = Some(now + Duration::from_secs(60));
    store.insert_sandbox(&busy).await.unwrap();

    let mut idle_but_stopped = idle.clone();
    idle_but_stopped.id = ids::new_sandbox_id();
    idle_but_stopped.state = SandboxState::Stopped;
    store.insert_sandbox(&idle_but_stopped).await.unwrap();

    let mut expired_but_deleted = expired.clone();
    expired_but_deleted.id = ids::new_sandbox_id();
    expired_but_deleted.state = SandboxState::Deleted;
    store.insert_sandbox(&expired_but_deleted).await.unwrap();

    let mut due: Vec<_> = store
        .list_due(now, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    due.sort();
    let mut want = vec![expired.id, idle.id];
    want.sort();
    assert_eq!(due, want);
}

async fn activity_only_moves_forward(store: Arc<dyn Store>) {
    let sandbox = store
        .insert_sandbox(&record(DEFAULT_TENANT, None))
        .await
        .unwrap();
    let later = sandbox.last_activity_at + Duration::from_secs(5);
    store.record_activity(&sandbox.id, later).await.unwrap();
    store
        .record_activity(&sandbox.id, sandbox.last_activity_at)
        .await
        .unwrap();
    store
        .record_activity(&ids::new_sandbox_id(), later)
        .await
        .expect("a missing id is ignored");
    let read = store
        .get_sandbox(DEFAULT_TENANT, &sandbox.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.last_activity_at, later);
    assert_eq!(read.revision, sandbox.revision, "activity writes no event");
}

async fn concurrent_writers_never_lose_an_update(store: Arc<dyn Store>) {
    let sandbox = store
        .insert_sandbox(&record(DEFAULT_TENANT, None))
        .await
        .unwrap();
    let writers = 8;
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        let id = sandbox.id.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let current = store
                    .get_sandbox(DEFAULT_TENANT, &id)
                    .await
                    .unwrap()
                    .unwrap();
                let mut next = current.clone();
                next.labels.insert(format!("w{writer}"), "1".into());
                if store
                    .update_sandbox(&next, current.revision, EventType::Updated)
                    .await
                    .unwrap()
                    .is_some()
                {
                    return;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let last = store
        .get_sandbox(DEFAULT_TENANT, &sandbox.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.labels.len(), writers, "every writer's label survived");
    let events = store
        .list_events(&EventQuery {
            sandbox_id: Some(sandbox.id.clone()),
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), writers + 1, "one event per successful write");
    assert!(events.windows(2).all(|w| w[0].revision < w[1].revision));
}

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

async fn api_keys_are_found_by_hash_listed_and_revoked_once(store: Arc<dyn Store>) {
    let a = paddock::keys::generate("team-a", "ci").unwrap();
    let b = paddock::keys::generate("team-b", "").unwrap();
    store.insert_api_key(&a.record).await.unwrap();
    store.insert_api_key(&b.record).await.unwrap();
    let again = store.insert_api_key(&a.record).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists);

    let found = store
        .api_key_by_hash(&paddock::keys::sha256(&a.secret))
        .await
        .unwrap()
        .expect("found by its hash");
    assert_eq!(found.id, a.record.id);
    assert_eq!(found.tenant, "team-a");
    assert_eq!(found.description, "ci");
    assert_eq!(found.revoked_at, None);
    assert!(
        store
            .api_key_by_hash(&paddock::keys::sha256(&a.secret[1..]))
            .await
            .unwrap()
            .is_none()
    );

    let all: Vec<String> = store
        .list_api_keys(None)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&a.record.id) && all.contains(&b.record.id));
    let only_b = store.list_api_keys(Some("team-b")).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].id, b.record.id);

    let first = clock::now();
    assert!(store.revoke_api_key(&a.record.id, first).await.unwrap());
    let later = first + Duration::from_secs(60);
    assert!(store.revoke_api_key(&a.record.id, later).await.unwrap());
    let revoked = store
        .api_key_by_hash(&a.record.secret_sha256)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        revoked.revoked_at.map(clock::to_millis),
        Some(clock::to_millis(first)),
        "the first revocation time is kept"
    );
    assert!(!store.revoke_api_key("key_missing", later).await.unwrap());
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
