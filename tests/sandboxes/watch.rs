//! Lifecycle events as a stream that resumes from a revision.

use super::*;

async fn watch_streams_every_change_and_resumes(store: Store) {
    let Some(server) = TestServer::on(store, |_| {}).await else {
        return;
    };
    let mut client = server.sandboxes().await;
    let mut events = client
        .watch_sandboxes(pb::WatchSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();

    let sandbox = server.create(Default::default()).await;
    let id = sandbox.id.clone();
    client
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    client
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: id.clone(),
        })
        .await
        .unwrap();

    use pb::SandboxState as S;
    let expected = [
        S::Pending,
        S::Starting,
        S::Running,
        S::Stopping,
        S::Stopped,
        S::Deleting,
        S::Deleted,
    ];
    let mut received = Vec::new();
    for _ in expected {
        let event = tokio::time::timeout(Duration::from_secs(5), events.message())
            .await
            .expect("an event within 5s")
            .unwrap()
            .unwrap();
        received.push(event);
    }
    let states: Vec<_> = received
        .iter()
        .map(|e| state(e.sandbox.as_ref().unwrap()))
        .collect();
    assert_eq!(states, expected);
    assert_eq!(received[0].r#type, pb::SandboxEventType::Created as i32);
    assert!(received.windows(2).all(|w| w[0].revision < w[1].revision));
    assert!(
        received
            .iter()
            .all(|e| e.sandbox.as_ref().unwrap().revision == e.revision)
    );

    // Resume after the third event: the rest arrive, nothing before.
    let mut resumed = client
        .watch_sandboxes(pb::WatchSandboxesRequest {
            after_revision: received[2].revision,
            sandbox_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    for want in &received[3..] {
        let got = tokio::time::timeout(Duration::from_secs(5), resumed.message())
            .await
            .expect("a resumed event within 5s")
            .unwrap()
            .unwrap();
        assert_eq!(&got, want);
    }

    // A watch limited to one sandbox sees nothing of another.
    let other = server.create(Default::default()).await;
    let quiet = tokio::time::timeout(Duration::from_millis(300), resumed.message()).await;
    assert!(
        quiet.is_err(),
        "no event of {} on a watch of {id}",
        other.id
    );
}

on_every_store!(watch_streams_every_change_and_resumes,);
