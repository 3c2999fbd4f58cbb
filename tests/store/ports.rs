//! What the preview proxy keeps in the store: public ports on the record,
//! found whoever's the sandbox is, and the secret that signs preview tokens.

use super::*;

async fn public_ports_are_kept_and_found_without_a_tenant(store: Arc<dyn Store>) {
    let mut sandbox = record("acme", None);
    sandbox.public_ports = vec![3000];
    let inserted = store.insert_sandbox(&sandbox).await.unwrap();
    let mut exposed = inserted.clone();
    exposed.public_ports = vec![3000, 8080];
    let saved = store
        .update_sandbox(&exposed, inserted.revision, EventType::Updated)
        .await
        .unwrap()
        .expect("the expected revision matches");
    assert_eq!(saved.public_ports, [3000, 8080]);
    assert_eq!(
        store.get_sandbox_of_any_tenant(&sandbox.id).await.unwrap(),
        Some(saved.clone())
    );
    assert_eq!(
        store
            .get_sandbox_of_any_tenant(&ids::new_sandbox_id())
            .await
            .unwrap(),
        None
    );
    let events = store
        .list_events(&EventQuery {
            tenant: Some("acme".into()),
            sandbox_id: Some(sandbox.id.clone()),
            after_revision: 0,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        events.last().unwrap().sandbox.public_ports,
        [3000, 8080],
        "events carry the public ports"
    );
}

async fn a_shared_secret_is_chosen_once(store: Arc<dyn Store>) {
    let first = store.shared_secret("preview-tokens").await.unwrap();
    assert!(first.len() >= 64, "a secret of {} characters", first.len());
    assert_eq!(store.shared_secret("preview-tokens").await.unwrap(), first);
    assert_ne!(store.shared_secret("another").await.unwrap(), first);
}

store_suite!(
    public_ports_are_kept_and_found_without_a_tenant,
    a_shared_secret_is_chosen_once
);
