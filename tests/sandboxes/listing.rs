//! Lists by state and label selector, in pages.

use super::*;

async fn list_filters_by_state_and_labels_and_pages(store: Store) {
    let Some(server) = TestServer::on(store, |_| {}).await else {
        return;
    };
    let mut client = server.sandboxes().await;
    let mut ml = Vec::new();
    for i in 0..23 {
        let team = if i % 2 == 0 { "ml" } else { "web" };
        let sandbox = server
            .create(pb::CreateSandboxRequest {
                labels: labels(&[("team", team), ("idx", &i.to_string())]),
                ..Default::default()
            })
            .await;
        if team == "ml" {
            ml.push(sandbox.id);
        }
    }
    let stopped = ml[0].clone();
    client
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: stopped.clone(),
        })
        .await
        .unwrap();

    // Page through team=ml five at a time: newest first, nothing repeated.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_sandboxes(pb::ListSandboxesRequest {
                label_selector: "team=ml".into(),
                page_size: 5,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.sandboxes.len() <= 5);
        seen.extend(page.sandboxes.into_iter().map(|s| s.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut newest_first = ml.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let running_ml = client
        .list_sandboxes(pb::ListSandboxesRequest {
            label_selector: "team=ml".into(),
            states: vec![pb::SandboxState::Running as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert_eq!(running_ml.len(), ml.len() - 1);
    assert!(running_ml.iter().all(|s| s.id != stopped));

    for (selector, count) in [
        ("team!=ml", 11),
        ("team", 23),
        ("!team", 0),
        ("team=web,idx=3", 1),
        ("team=web,idx=4", 0),
    ] {
        let found = client
            .list_sandboxes(pb::ListSandboxesRequest {
                label_selector: selector.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .sandboxes;
        assert_eq!(found.len(), count, "selector {selector:?}");
    }

    // A token is bound to the filters it was made for.
    let page = client
        .list_sandboxes(pb::ListSandboxesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let status = client
        .list_sandboxes(pb::ListSandboxesRequest {
            page_size: 2,
            page_token: page.next_page_token,
            label_selector: "team=ml".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

async fn deleted_sandboxes_are_listed_only_when_asked_for(store: Store) {
    let Some(server) = TestServer::on(store, |_| {}).await else {
        return;
    };
    let mut client = server.sandboxes().await;
    let sandbox = server.create(Default::default()).await;
    client
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();
    let default_list = client
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert!(default_list.is_empty());
    let deleted = client
        .list_sandboxes(pb::ListSandboxesRequest {
            states: vec![pb::SandboxState::Deleted as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].id, sandbox.id);
}

on_every_store!(
    list_filters_by_state_and_labels_and_pages,
    deleted_sandboxes_are_listed_only_when_asked_for,
);
