//! Leases: one holder at a time, renewed by its holder, taken over once
//! expired, given up at once.

use super::*;

async fn a_lease_has_one_holder_until_it_expires_or_is_given_up(store: Arc<dyn Store>) {
    let minute = Duration::from_secs(60);
    assert!(store.acquire_lease("reaper", "a", minute).await.unwrap());
    assert!(!store.acquire_lease("reaper", "b", minute).await.unwrap());
    assert!(
        store.acquire_lease("reaper", "a", minute).await.unwrap(),
        "its holder renews it"
    );
    assert!(
        store.acquire_lease("other", "b", minute).await.unwrap(),
        "leases are by name"
    );
    store.release_lease("reaper", "b").await.unwrap();
    assert!(
        !store.acquire_lease("reaper", "b", minute).await.unwrap(),
        "only its holder gives it up"
    );
    store.release_lease("reaper", "a").await.unwrap();
    assert!(store.acquire_lease("reaper", "b", minute).await.unwrap());

    // Renewed for no time at all, it is expired at once by the
    // database's clock, and another takes it.
    assert!(
        store
            .acquire_lease("reaper", "b", Duration::ZERO)
            .await
            .unwrap()
    );
    assert!(store.acquire_lease("reaper", "c", minute).await.unwrap());
    assert!(!store.acquire_lease("reaper", "b", minute).await.unwrap());
}

store_suite!(a_lease_has_one_holder_until_it_expires_or_is_given_up);
