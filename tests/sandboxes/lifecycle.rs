//! A sandbox's life: create, get, stop, start, delete; retries and
//! get-or-create that make no second sandbox; env values never returned.

use super::*;

async fn create_get_stop_start_delete(store: Store) {
    let Some(server) = TestServer::on(store, |_| {}).await else {
        return;
    };
    let mut client = server.sandboxes().await;

    let created = client
        .create_sandbox(pb::CreateSandboxRequest {
            name: Some("lifecycle".into()),
            labels: labels(&[("team", "ml")]),
            workdir: "/work/src".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.created);
    let sandbox = created.sandbox.unwrap();
    assert!(sandbox.id.starts_with("sbx_"));
    assert_eq!(state(&sandbox), pb::SandboxState::Running);
    assert_eq!(sandbox.provider, "process");
    assert_eq!(sandbox.workdir, "/work/src");
    assert!(sandbox.start_time.is_some());
    assert!(
        sandbox.expire_time.is_some(),
        "the default lifetime applies"
    );
    let dir = server.sandbox_dir(&sandbox.id);
    assert!(
        dir.join("rootfs/work/src").is_dir(),
        "workdir made inside the sandbox"
    );
    assert_eq!(sandbox.provider_ref, dir.display().to_string());

    assert_eq!(server.get(&sandbox.id).await, sandbox);

    let stopped = client
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(state(&stopped), pb::SandboxState::Stopped);
    assert_eq!(stopped.state_reason, "stopped by request");
    assert!(dir.is_dir(), "stop keeps the filesystem");

    let started = client
        .start_sandbox(pb::StartSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(state(&started), pb::SandboxState::Running);
    assert!(started.revision > stopped.revision);

    let deleted = client
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(state(&deleted), pb::SandboxState::Deleted);
    assert!(!dir.exists(), "delete removes the directory");

    // The record stays for audit, and the name is free again.
    assert_eq!(
        state(&server.get(&sandbox.id).await),
        pb::SandboxState::Deleted
    );
    let again = server.create(named("lifecycle")).await;
    assert_ne!(again.id, sandbox.id);
}

async fn repeated_actions_are_idempotent_and_illegal_ones_say_why(store: Store) {
    let Some(server) = TestServer::on(store, |_| {}).await else {
        return;
    };
    let mut client = server.sandboxes().await;
    let sandbox = server.create(Default::default()).await;
    let id = || sandbox.id.clone();

    client
        .start_sandbox(pb::StartSandboxRequest { sandbox_id: id() })
        .await
        .expect("starting a running sandbox succeeds");
    client
        .stop_sandbox(pb::StopSandboxRequest { sandbox_id: id() })
        .await
        .unwrap();
    let again = client
        .stop_sandbox(pb::StopSandboxRequest { sandbox_id: id() })
        .await
        .expect("stopping a stopped sandbox succeeds")
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(state(&again), pb::SandboxState::Stopped);

    client
        .delete_sandbox(pb::DeleteSandboxRequest { sandbox_id: id() })
        .await
        .unwrap();
    client
        .delete_sandbox(pb::DeleteSandboxRequest { sandbox_id: id() })
        .await
        .expect("deleting a deleted sandbox succeeds");

    let status = client
        .start_sandbox(pb::StartSandboxRequest { sandbox_id: id() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("is DELETED"),
        "{}",
        status.message()
    );

    let status = client
        .stop_sandbox(pb::StopSandboxRequest { sandbox_id: id() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    let status = client
        .update_sandbox(pb::UpdateSandboxRequest {
            sandbox_id: id(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["labels".into()],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
}

async fn get_or_create_by_name_returns_the_same_sandbox(store: Store) {
    let Some(server) = TestServer::on(store, |_| {}).await else {
        return;
    };
    let mut client = server.sandboxes().await;
    let first = server.create(named("shared")).await;

    let status = client.create_sandbox(named("shared")).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert!(status.message().contains(&first.id), "{}", status.message());

    let again = client
        .create_sandbox(pb::CreateSandboxRequest {
            if_exists: pb::IfExists::ReturnExisting as i32,
            ..named("shared")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.sandbox.unwrap().id, first.id);
}

async fn request_id_makes_retries_safe(store: Store) {
    let Some(server) = TestServer::on(store, |_| {}).await else {
        return;
    };
    let mut client = server.sandboxes().await;
    let request = pb::CreateSandboxRequest {
        request_id: "retry-me".into(),
        labels: labels(&[("k", "v")]),
        ..Default::default()
    };

    // Concurrent retries: exactly one sandbox is made.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut client = client.clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            client.create_sandbox(request).await.unwrap().into_inner()
        }));
    }
    let mut ids = Vec::new();
    let mut made = 0;
    for task in tasks {
        let response = task.await.unwrap();
        made += usize::from(response.created);
        ids.push(response.sandbox.unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every retry answers with the same sandbox");
    assert_eq!(made, 1, "only one request made it");

    let status = client
        .create_sandbox(pb::CreateSandboxRequest {
            labels: labels(&[("k", "other")]),
            ..request
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("request_id:"),
        "{}",
        status.message()
    );
}

async fn env_values_are_never_returned(store: Store) {
    let Some(server) = TestServer::on(store, |_| {}).await else {
        return;
    };
    let mut client = server.sandboxes().await;
    let secret = "s3cr3t-value-that-must-not-leak";
    let response = client
        .create_sandbox(pb::CreateSandboxRequest {
            env: [("API_TOKEN".to_string(), secret.to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sandbox = response.sandbox.clone().unwrap();
    assert_eq!(sandbox.env_keys, vec!["API_TOKEN".to_string()]);

    let mut encoded = response.encode_to_vec();
    encoded.extend(server.get(&sandbox.id).await.encode_to_vec());
    let mut events = client
        .watch_sandboxes(pb::WatchSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    for _ in 0..3 {
        encoded.extend(events.message().await.unwrap().unwrap().encode_to_vec());
    }
    let needle = secret.as_bytes();
    assert!(
        !encoded.windows(needle.len()).any(|w| w == needle),
        "an env value appeared in a response"
    );
}

on_every_store!(
    create_get_stop_start_delete,
    repeated_actions_are_idempotent_and_illegal_ones_say_why,
    get_or_create_by_name_returns_the_same_sandbox,
    request_id_makes_retries_safe,
    env_values_are_never_returned,
);
