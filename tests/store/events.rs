//! Lifecycle events: ordered, scoped, env values blanked.

use super::*;

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

store_suite!(events_are_ordered_scoped_and_blank_env_values);
