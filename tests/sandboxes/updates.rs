//! Labels, metadata and lifetime change; nothing else does.

use super::*;

async fn update_changes_labels_metadata_and_lifetime(store: Store) {
    let Some(server) = TestServer::on(store, |_| {}).await else {
        return;
    };
    let mut client = server.sandboxes().await;
    let sandbox = server
        .create(pb::CreateSandboxRequest {
            labels: labels(&[("old", "1")]),
            ..Default::default()
        })
        .await;
    let metadata = prost_types::Struct {
        fields: [(
            "purpose".to_string(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("eval".into())),
            },
        )]
        .into(),
    };
    let updated = client
        .update_sandbox(pb::UpdateSandboxRequest {
            sandbox_id: sandbox.id.clone(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels".into(), "metadata".into(), "timeout".into()],
            }),
            labels: labels(&[("new", "2")]),
            metadata: Some(metadata.clone()),
            timeout: Some(prost_types::Duration {
                seconds: 7200,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(updated.labels, labels(&[("new", "2")]));
    assert_eq!(updated.metadata, Some(metadata));
    let expires = updated.expire_time.unwrap().seconds;
    let created = updated.create_time.unwrap().seconds;
    assert!(
        expires - created >= 7199,
        "lifetime extended to 2h from now"
    );
    assert_eq!(server.get(&sandbox.id).await, updated);

    // Fields not in the mask stay.
    let relabelled = client
        .update_sandbox(pb::UpdateSandboxRequest {
            sandbox_id: sandbox.id.clone(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels".into()],
            }),
            labels: labels(&[("x", "y")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(relabelled.metadata, updated.metadata);
    assert_eq!(relabelled.expire_time, updated.expire_time);

    let by_new_label = client
        .list_sandboxes(pb::ListSandboxesRequest {
            label_selector: "x=y".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert_eq!(by_new_label.len(), 1, "the label index follows updates");
}

on_every_store!(update_changes_labels_metadata_and_lifetime,);
