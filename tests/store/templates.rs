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
        .list_templates(Some("acme"))
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

/// A warm pool's sandbox: its owner's pool tenant's, made from `id`@1.
async fn pooled(store: &Arc<dyn Store>, owner: &str, id: &str) -> Sandbox {
    let mut member = record(&paddock::sandbox::pool_tenant(owner), None);
    member.spec.template = Some(TemplateRef {
        id: id.into(),
        name: "py".into(),
        version: 1,
    });
    store.insert_sandbox(&member).await.unwrap()
}

async fn a_claim_moves_a_pooled_sandbox_to_its_tenant_once(store: Arc<dyn Store>) {
    let id = ids::new_template_id();
    store
        .insert_template(&version("acme", "py", &id, 1))
        .await
        .unwrap();
    let member = pooled(&store, "acme", &id).await;
    assert_eq!(store.get_sandbox("acme", &member.id).await.unwrap(), None);

    // Two claims of the same revision: one wins, the other writes nothing.
    let mut claim = member.clone();
    claim.tenant = "acme".into();
    claim.name = Some("mine".into());
    claim.request_id = Some("req-1".into());
    claim.request_fingerprint = Some("fingerprint".into());
    claim.spec.env.insert("TOKEN".into(), "s3cret".into());
    claim
        .spec
        .command_env
        .insert("TOKEN".into(), "s3cret".into());
    claim.spec.idle_timeout = Some(Duration::from_secs(60));
    claim.expires_at =
        Some(clock::from_millis(clock::to_millis(clock::now())) + Duration::from_secs(600));
    let won = store
        .update_sandbox(&claim, member.revision, EventType::Created)
        .await
        .unwrap()
        .expect("the first claim wins");
    let mut rival = member.clone();
    rival.tenant = "globex".into();
    assert_eq!(
        store
            .update_sandbox(&rival, member.revision, EventType::Created)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.get_sandbox("acme", &member.id).await.unwrap(),
        Some(won.clone())
    );
    assert_eq!(store.get_sandbox("globex", &member.id).await.unwrap(), None);
    let pool = paddock::sandbox::pool_tenant("acme");
    assert_eq!(store.get_sandbox(&pool, &member.id).await.unwrap(), None);
    assert_eq!(
        store.find_by_name("acme", "mine").await.unwrap(),
        Some(won.clone())
    );
    assert_eq!(
        store.find_by_request_id("acme", "req-1").await.unwrap(),
        Some(won.clone())
    );

    // The tenant's first event of it is the claim, with env values blanked.
    let events = store
        .list_events(&EventQuery {
            tenant: Some("acme".into()),
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, EventType::Created);
    assert_eq!(events[0].sandbox.spec.env["TOKEN"], "");
    assert_eq!(events[0].sandbox.spec.command_env["TOKEN"], "");

    // A pooled sandbox is no tenant's use of the template; a claimed one is.
    pooled(&store, "acme", &id).await;
    assert_eq!(
        store.delete_template("acme", "py", false).await.unwrap(),
        TemplateRemoval::InUse(vec![won.id.clone()])
    );
}

async fn templates_of_every_tenant_are_listed_at_their_latest_versions(store: Arc<dyn Store>) {
    let py = ids::new_template_id();
    let r = ids::new_template_id();
    for record in [
        version("acme", "py", &py, 1),
        version("acme", "py", &py, 2),
        version("globex", "r", &r, 1),
    ] {
        store.insert_template(&record).await.unwrap();
    }
    let every: Vec<(String, String, i64)> = store
        .list_templates(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.tenant, t.name, t.version))
        .collect();
    assert_eq!(
        every,
        [
            ("acme".to_owned(), "py".to_owned(), 2),
            ("globex".to_owned(), "r".to_owned(), 1)
        ]
    );
}

store_suite!(
    template_versions_are_kept_under_one_name,
    a_template_in_use_is_deleted_only_when_forced,
    a_claim_moves_a_pooled_sandbox_to_its_tenant_once,
    templates_of_every_tenant_are_listed_at_their_latest_versions
);
