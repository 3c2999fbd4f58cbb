//! Named volumes in the store: names per tenant, the sandboxes that mount
//! a volume, and a deletion refused while a sandbox not DELETED mounts it.

use super::*;
use paddock::sandbox::Volume;
use paddock::store::{VolumeRecord, VolumeRemoval};

fn volume(tenant: &str, name: &str) -> VolumeRecord {
    VolumeRecord {
        id: ids::new_volume_id(),
        tenant: tenant.into(),
        name: name.into(),
        provider: "docker".into(),
        created_at: clock::from_millis(clock::to_millis(clock::now())),
    }
}

fn mounting(tenant: &str, volume: &VolumeRecord) -> Sandbox {
    let mut sandbox = record(tenant, None);
    sandbox.spec.volumes = vec![Volume {
        name: volume.name.clone(),
        volume_id: volume.id.clone(),
        mount_path: "/data".into(),
        read_only: false,
    }];
    sandbox
}

async fn volumes_are_named_per_tenant(store: Arc<dyn Store>) {
    let data = volume("acme", "data");
    store.insert_volume(&data).await.unwrap();
    let taken = store
        .insert_volume(&volume("acme", "data"))
        .await
        .unwrap_err();
    assert_eq!(taken.kind(), ErrorKind::AlreadyExists);
    assert!(taken.message().contains("\"data\""), "{}", taken.message());
    let theirs = volume("globex", "data");
    store.insert_volume(&theirs).await.unwrap();
    store.insert_volume(&volume("acme", "cache")).await.unwrap();

    assert_eq!(
        store.get_volume("acme", "data").await.unwrap(),
        Some(data.clone())
    );
    assert_eq!(
        store.get_volume("globex", "data").await.unwrap(),
        Some(theirs)
    );
    assert_eq!(store.get_volume("initech", "data").await.unwrap(), None);
    let names: Vec<String> = store
        .list_volumes("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["cache", "data"]);
}

async fn a_mounted_volume_is_deleted_only_once_its_sandboxes_are(store: Arc<dyn Store>) {
    let data = volume("acme", "data");
    store.insert_volume(&data).await.unwrap();
    let first = store
        .insert_sandbox(&mounting("acme", &data))
        .await
        .unwrap();
    let second = store
        .insert_sandbox(&mounting("acme", &data))
        .await
        .unwrap();
    let mut users = vec![first.id.clone(), second.id.clone()];
    users.sort();
    assert_eq!(store.volume_users(&data.id).await.unwrap(), users);
    assert_eq!(
        store.delete_volume("acme", "data").await.unwrap(),
        VolumeRemoval::InUse(users)
    );
    assert_eq!(
        store.delete_volume("globex", "data").await.unwrap(),
        VolumeRemoval::Missing,
        "another tenant's volume of that name is not this tenant's"
    );

    for sandbox in [first, second] {
        let mut deleted = sandbox.clone();
        deleted.state = SandboxState::Deleted;
        store
            .update_sandbox(&deleted, sandbox.revision, EventType::StateChanged)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(store.volume_users(&data.id).await.unwrap().is_empty());
    assert_eq!(
        store.delete_volume("acme", "data").await.unwrap(),
        VolumeRemoval::Removed(data.clone())
    );
    assert_eq!(store.get_volume("acme", "data").await.unwrap(), None);
    assert_eq!(
        store.delete_volume("acme", "data").await.unwrap(),
        VolumeRemoval::Missing
    );

    // A sandbox naming a volume deleted meanwhile is not written.
    let late = store
        .insert_sandbox(&mounting("acme", &data))
        .await
        .unwrap_err();
    assert_eq!(late.kind(), ErrorKind::FailedPrecondition, "{late}");
}

store_suite!(
    volumes_are_named_per_tenant,
    a_mounted_volume_is_deleted_only_once_its_sandboxes_are
);
