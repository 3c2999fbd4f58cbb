//! API keys: found by hash, listed, revoked once.

use super::*;

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

store_suite!(api_keys_are_found_by_hash_listed_and_revoked_once);
