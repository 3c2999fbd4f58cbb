//! Two servers sharing one real Postgres behave as one service: each sees
//! the other's sandboxes, a watch on one streams the other's events, one
//! reaps at a time, and claims from a warm pool through both never share a
//! sandbox.

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

#[tokio::test]
async fn claims_through_two_replicas_never_share_a_warm_sandbox() {
    // On Docker: both servers reach every sandbox of the engine they share
    // (a process sandbox is reached only through its server's directory).
    if !common::docker::available() {
        return;
    }
    let Some(url) = common::postgres::fresh_database().await else {
        return;
    };
    let on_docker = |args: &mut paddock::config::ServeArgs| {
        common::Provider::Docker.configure(args);
        args.database_url = Some(url.clone());
    };
    let a = TestServer::start_with(on_docker).await;
    let b = TestServer::start_with(on_docker).await;
    common::warm::warm_template(&a, "shared", 5).await;
    // One server (the lease's holder) fills it; both see it full.
    common::warm::wait_until_ready(&b, "shared", 5).await;
    common::warm::claim_at_once(&[&a, &b], "shared", 20).await;
    let (on_a, on_b) = (
        common::warm::pool_of(&a, "shared").await,
        common::warm::pool_of(&b, "shared").await,
    );
    assert_eq!(on_a.hits + on_a.misses, 10, "{on_a:?}");
    assert_eq!(on_b.hits + on_b.misses, 10, "{on_b:?}");
    assert!(on_a.hits + on_b.hits >= 5, "{on_a:?} {on_b:?}");
}

/// The lease time the lease test runs with, and how soon after its
/// holder's death another server must take the lease over: the lease time
/// plus a renewal interval (a third of it), with a second of slack.
const LEASE_TTL: &str = "2s";
const TAKEOVER_WITHIN: Duration = Duration::from_millis(2000 + 667 + 1000);

/// Whether `server`'s log says it holds the reaper's lease.
fn holds_lease(server: &common::spawned::ServerProcess) -> bool {
    server.log_lines().iter().any(|line| {
        line["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("holding the reaper's lease"))
    })
}

/// How many times `server`'s reaper deleted `sandbox_id`.
fn reaped_by(server: &common::spawned::ServerProcess, sandbox_id: &str) -> usize {
    server
        .log_lines()
        .iter()
        .filter(|line| line["message"] == "lifetime ran out; deleting")
        .filter(|line| line["sandbox_id"] == sandbox_id)
        .count()
}

async fn create_expiring(
    client: &mut paddock::pb::sandbox_service_client::SandboxServiceClient<
        tonic::transport::Channel,
    >,
    seconds: i64,
) -> pb::Sandbox {
    client
        .create_sandbox(pb::CreateSandboxRequest {
            timeout: Some(prost_types::Duration { seconds, nanos: 0 }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap()
}

/// The events of `sandbox_id` that made it DELETED, from the store itself.
async fn deletions(url: &str, sandbox_id: &str) -> usize {
    use paddock::store::{EventQuery, SqlStore, Store};
    let store = SqlStore::connect(url).await.unwrap();
    store
        .list_events(&EventQuery {
            sandbox_id: Some(sandbox_id.to_owned()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|event| event.sandbox.state == paddock::sandbox::SandboxState::Deleted)
        .count()
}

#[tokio::test]
async fn one_replica_reaps_and_another_takes_over_when_it_dies() {
    let Some(url) = common::postgres::fresh_database().await else {
        return;
    };
    // One data directory for both: process sandboxes live there, so either
    // server can delete the other's.
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("PADDOCK_DATABASE_URL", url.as_str()),
        ("PADDOCK_REAPER_LEASE_TTL", LEASE_TTL),
        ("PADDOCK_REAP_INTERVAL", "100ms"),
    ];
    let mut a = common::spawned::ServerProcess::spawn_with(data.path(), &env);
    common::eventually(Duration::from_secs(10), "A to take the lease", || {
        let held = holds_lease(&a);
        async move { held.then_some(()) }
    })
    .await;
    let b = common::spawned::ServerProcess::spawn_with(data.path(), &env);

    // While A lives, A reaps, B does not, even for sandboxes made through B.
    let mut client_b = b.client().await;
    let early = create_expiring(&mut client_b, 1).await;
    common::eventually(Duration::from_secs(10), "the first sandbox reaped", || {
        let reaped = reaped_by(&a, &early.id);
        async move { (reaped > 0).then_some(()) }
    })
    .await;
    assert!(!holds_lease(&b), "both servers hold the lease");

    // A dies holding the lease, with a sandbox still to reap.
    let late = create_expiring(&mut client_b, 2).await;
    a.kill();
    let killed = std::time::Instant::now();
    common::eventually(TAKEOVER_WITHIN, "B to take the lease over", || {
        let held = holds_lease(&b);
        async move { held.then_some(()) }
    })
    .await;
    let took_over = killed.elapsed();
    assert!(
        took_over <= TAKEOVER_WITHIN,
        "took over after {took_over:?}"
    );
    common::eventually(Duration::from_secs(10), "the second sandbox reaped", || {
        let reaped = reaped_by(&b, &late.id);
        async move { (reaped > 0).then_some(()) }
    })
    .await;

    assert_eq!(
        reaped_by(&b, &early.id),
        0,
        "B reaped while A held the lease"
    );
    assert_eq!(reaped_by(&a, &late.id), 0);
    for sandbox in [&early, &late] {
        // The reaper logs before it deletes: wait for the deletion's event.
        common::eventually(Duration::from_secs(10), "the deletion's event", || async {
            (deletions(&url, &sandbox.id).await > 0).then_some(())
        })
        .await;
        assert_eq!(
            deletions(&url, &sandbox.id).await,
            1,
            "{} was deleted once",
            sandbox.id
        );
    }
}
