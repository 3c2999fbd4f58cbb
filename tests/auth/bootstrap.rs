//! A deployment's bootstrap API key (`--bootstrap-api-key`): the server adds
//! it for its tenant, keeps one record of it across restarts, never brings
//! it back once revoked, and refuses one that is not a key.

use super::*;

const BOOTSTRAP: &str = "pdk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn listed_keys(server: &TestServer) -> Vec<String> {
    keys(server, &["list"])
        .expect("keys list")
        .lines()
        .filter(|line| line.contains("key_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_bootstrap_key_is_added_once_and_stays_revoked() {
    let server = TestServer::start_with(|args| {
        args.auth = Some("keys".into());
        args.bootstrap_api_key = Some(BOOTSTRAP.into());
        args.bootstrap_tenant = Some("team-a".into());
    })
    .await;
    let mut first = clients(&server, Some(BOOTSTRAP)).await;
    first
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("the bootstrap key is a key");
    let listed = listed_keys(&server);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].contains("team-a"), "{listed:?}");

    let server = server.restart().await;
    assert_eq!(
        listed_keys(&server).len(),
        1,
        "a restart adds no second record"
    );

    let id = listed[0]
        .split_whitespace()
        .find(|word| word.starts_with("key_"))
        .unwrap()
        .to_owned();
    keys(&server, &["revoke", &id]).expect("keys revoke");
    let server = server.restart().await;
    let mut again = clients(&server, Some(BOOTSTRAP)).await;
    assert_code(
        again
            .sandboxes
            .list_sandboxes(pb::ListSandboxesRequest::default())
            .await,
        Code::Unauthenticated,
        "a revoked bootstrap key",
    );
}

#[tokio::test]
async fn a_bootstrap_key_that_is_no_key_stops_the_start() {
    let temp = tempfile::tempdir().unwrap();
    let config = ServerConfig::resolve(ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(temp.path().into()),
        provider: Some("process".into()),
        bootstrap_api_key: Some("hunter2".into()),
        ..Default::default()
    })
    .unwrap();
    let error = match paddock::server::Server::start(config).await {
        Ok(_) => panic!("started with a malformed bootstrap key"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("bootstrap_api_key"), "{error}");
    assert!(
        !error.contains("hunter2"),
        "the refusal shows the secret: {error}"
    );
}
