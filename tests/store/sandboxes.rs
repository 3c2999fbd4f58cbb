//! Sandbox records: every field kept, unique names and request ids,
//! compare-and-set updates, lists, the reaper's due list, activity.

use super::*;

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

async fn the_census_counts_live_sandboxes_by_provider_and_state(store: Arc<dyn Store>) {
    assert_eq!(store.census().await.unwrap(), vec![]);
    let mut docker = record("other-tenant", None);
    docker.provider = "docker".into();
    store.insert_sandbox(&docker).await.unwrap();
    let first = store
        .insert_sandbox(&record(DEFAULT_TENANT, None))
        .await
        .unwrap();
    store
        .insert_sandbox(&record(DEFAULT_TENANT, None))
        .await
        .unwrap();
    let mut deleted = first.clone();
    deleted.state = SandboxState::Deleted;
    store
        .update_sandbox(&deleted, first.revision, EventType::StateChanged)
        .await
        .unwrap()
        .expect("the update applies");
    assert_eq!(
        store.census().await.unwrap(),
        vec![
            ("docker".to_owned(), SandboxState::Pending, 1),
            ("process".to_owned(), SandboxState::Pending, 1),
        ],
        "every tenant's, DELETED left out"
    );
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

store_suite!(
    inserts_and_reads_back_every_field,
    names_are_unique_among_live_sandboxes_only,
    request_ids_are_unique_per_tenant,
    updates_are_compare_and_set,
    lists_filter_by_tenant_state_and_labels_and_page,
    due_sandboxes_are_expired_or_idle,
    activity_only_moves_forward,
    the_census_counts_live_sandboxes_by_provider_and_state,
    concurrent_writers_never_lose_an_update,
);
