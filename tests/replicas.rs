//! Two servers sharing one real Postgres behave as one service: each sees
//! the other's sandboxes, and a watch on one streams the other's events.

mod common;

use std::time::Duration;

use common::TestServer;
use paddock::pb;

#[tokio::test]
async fn replicas_share_state_and_events_through_postgres() {
    let Some(url) = common::postgres::fresh_database().await else {
        return;
    };
    let a = TestServer::start_with(|args| args.database_url = Some(url.clone())).await;
    let b = TestServer::start_with(|args| args.database_url = Some(url.clone())).await;
    let mut client_a = a.sandboxes().await;
    let mut client_b = b.sandboxes().await;

    let mut events_on_b = client_b
        .watch_sandboxes(pb::WatchSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();

    let made_on_a = client_a
        .create_sandbox(pb::CreateSandboxRequest {
            name: Some("shared".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();

    let seen_on_b = client_b
        .get_sandbox(pb::GetSandboxRequest {
            sandbox_id: made_on_a.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert_eq!(seen_on_b, made_on_a);

    // The name is taken across replicas.
    let status = client_b
        .create_sandbox(pb::CreateSandboxRequest {
            name: Some("shared".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::AlreadyExists);

    // B's watch receives A's events, in order, by polling the store.
    let mut revisions = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(5), events_on_b.message())
            .await
            .expect("A's event reaches B's watch within 5s")
            .unwrap()
            .unwrap();
        assert_eq!(event.sandbox.as_ref().unwrap().id, made_on_a.id);
        revisions.push(event.revision);
    }
    assert!(revisions.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(*revisions.last().unwrap(), made_on_a.revision);
}
