//! Templates in the store: versions under one name per tenant, the latest
//! found and listed, and a deletion refused while sandboxes made from the
//! template are not DELETED (unless forced).

use super::*;
use paddock::sandbox::{TemplateRecord, TemplateRef, TemplateSpec};
use paddock::store::TemplateRemoval;

fn version(tenant: &str, name: &str, id: &str, number: i64) -> TemplateRecord {
    TemplateRecord {
        id: id.into(),
        tenant: tenant.into(),
        name: name.into(),
        version: number,
        spec: TemplateSpec {
            image: Some(format!("busybox:{number}")),
            env: BTreeMap::from([("SECRET".into(), "kept".into())]),
            ..TemplateSpec::default()
        },
        source: "create".into(),
        owned_image: (number > 1).then(|| format!("paddock-template/{id}:{number}")),
        created_at: clock::from_millis(clock::to_millis(clock::now())),
    }
}

async fn template_versions_are_kept_under_one_name(store: Arc<dyn Store>) {
    let id = ids::new_template_id();
    let first = version("acme", "tf-1.5.5", &id, 1);
    store.insert_template(&first).await.unwrap();
    let taken = store
        .insert_template(&version("acme", "tf-1.5.5", &ids::new_template_id(), 1))
        .await
        .unwrap_err();
    assert_eq!(taken.kind(), ErrorKind::AlreadyExists);
    let second = version("acme", "tf-1.5.5", &id, 2);
    store.insert_template(&second).await.unwrap();
    store
        .insert_template(&version("acme", "py", &ids::new_template_id(), 1))
        .await
        .unwrap();
    store
        .insert_template(&version("globex", "tf-1.5.5", &ids::new_template_id(), 1))
        .await
        .unwrap();

    assert_eq!(
        store.get_template("acme", "tf-1.5.5", None).await.unwrap(),
        Some(second.clone()),
        "the latest version, its environment values kept"
    );
    assert_eq!(
        store
            .get_template("acme", "tf-1.5.5", Some(1))
            .await
            .unwrap(),
        Some(first)
    );
    assert_eq!(
        store
            .get_template("acme", "tf-1.5.5", Some(3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.get_template("initech", "py", None).await.unwrap(),
        None
    );
    let listed: Vec<(String, i64)> = store
        .list_templates("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.version))
        .collect();
    assert_eq!(listed, [("py".to_owned(), 1), ("tf-1.5.5".to_owned(), 2)]);
}

async fn a_template_in_use_is_deleted_only_when_forced(store: Arc<dyn Store>) {
    let id = ids::new_template_id();
    store
        .insert_template(&version("acme", "py", &id, 1))
        .await
        .unwrap();
    store
        .insert_template(&version("acme", "py", &id, 2))
        .await
        .unwrap();
    let mut made = record("acme", None);
    made.spec.template = Some(TemplateRef {
        id: id.clone(),
        name: "py".into(),
        version: 2,
    });
    let made = store.insert_sandbox(&made).await.unwrap();
    assert_eq!(
        store.delete_template("acme", "py", false).await.unwrap(),
        TemplateRemoval::InUse(vec![made.id.clone()])
    );
    assert_eq!(
        store.delete_template("globex", "py", false).await.unwrap(),
        TemplateRemoval::Missing
    );
    let TemplateRemoval::Removed(versions) =
        store.delete_template("acme", "py", true).await.unwrap()
    else {
        panic!("a forced delete removes the template");
    };
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(store.get_template("acme", "py", None).await.unwrap(), None);
    assert_eq!(
        store
            .get_sandbox("acme", &made.id)
            .await
            .unwrap()
            .unwrap()
            .spec
            .template,
        made.spec.template,
        "its sandboxes keep saying what made them"
    );
}

store_suite!(
    template_versions_are_kept_under_one_name,
    a_template_in_use_is_deleted_only_when_forced
);
