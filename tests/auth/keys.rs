//! Which calls need a key, and where a server without keys may listen.

use super::*;

async fn calls_need_a_valid_unrevoked_key(store: Store) {
    let Some(server) = keyed_server(store).await else {
        return;
    };
    let key = make_key(&server, "team-a");

    let list = || pb::ListSandboxesRequest::default();
    let mut anonymous = clients(&server, None).await;
    assert_refused(
        anonymous.sandboxes.list_sandboxes(list()).await,
        Code::Unauthenticated,
        "no key",
        "authorization: Bearer",
    );
    for header in [
        "pdk_nope".to_owned(),
        format!("Basic {key}"),
        format!("Bearer {}", key.replace("pdk_", "pdx_")),
    ] {
        let mut odd =
            SandboxServiceClient::new(with_header(server.channel().await, Some(header.clone())));
        assert_code(
            odd.list_sandboxes(list()).await,
            Code::Unauthenticated,
            &header,
        );
    }
    let unknown = format!("pdk_{}", "0".repeat(64));
    let refused = assert_code(
        clients(&server, Some(&unknown))
            .await
            .sandboxes
            .list_sandboxes(list())
            .await,
        Code::Unauthenticated,
        "unknown key",
    );
    assert_eq!(refused.message(), "the API key is not valid");

    let mut team_a = clients(&server, Some(&key)).await;
    team_a
        .sandboxes
        .list_sandboxes(list())
        .await
        .expect("a valid key works");
    // Health answers anyone; reflection needs a key unless opened.
    let health = server
        .health()
        .await
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without a key")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    assert_code(
        list_services(&server).await,
        Code::Unauthenticated,
        "reflection without a key",
    );

    // The database keeps the hash only; listing shows ids, never keys.
    let database = std::fs::read(server.data_dir.join("paddock.db")).unwrap_or_default();
    let wal = std::fs::read(server.data_dir.join("paddock.db-wal")).unwrap_or_default();
    let secret = key.as_bytes();
    for bytes in [&database, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret),
            "the key is stored in clear"
        );
    }
    let listed = keys(&server, &["list"]).unwrap();
    assert!(
        listed.contains("team-a") && !listed.contains(&key),
        "{listed}"
    );
    let id = listed
        .lines()
        .find_map(|line| line.split_whitespace().find(|w| w.starts_with("key_")))
        .expect("a key id")
        .to_owned();

    keys(&server, &["revoke", &id]).unwrap();
    // A server trusts a key it checked for up to a second.
    let revoked_at = std::time::Instant::now();
    let refused = common::eventually(Duration::from_secs(5), "the revocation", || {
        let mut sandboxes = team_a.sandboxes.clone();
        async move { sandboxes.list_sandboxes(list()).await.err() }
    })
    .await;
    assert!(
        revoked_at.elapsed() < paddock::api::auth::KEY_CACHE_TTL + Duration::from_millis(500),
        "a revoked key is refused within the key cache's time"
    );
    assert_eq!(
        refused.code(),
        Code::Unauthenticated,
        "{}",
        refused.message()
    );
    assert_eq!(refused.message(), "the API key was revoked");
    assert!(keys(&server, &["list"]).unwrap().contains(&id));
    let error = keys(&server, &["revoke", "key_0000000000000000"]).unwrap_err();
    assert!(error.contains("there is no key"), "{error}");
    let error = keys(&server, &["create", "--tenant", "bad tenant"]).unwrap_err();
    assert!(error.contains("not a tenant name"), "{error}");
}

async fn reflection_can_be_opened_to_callers_without_a_key(store: Store) {
    let Some(server) = TestServer::on(store, |args: &mut ServeArgs| {
        args.auth = Some("keys".into());
        args.open_reflection = Some(true);
    })
    .await
    else {
        return;
    };
    let mut answers = list_services(&server)
        .await
        .expect("open reflection")
        .into_inner();
    assert!(answers.message().await.unwrap().is_some());
    let mut anonymous = clients(&server, None).await;
    assert_code(
        anonymous
            .sandboxes
            .list_sandboxes(pb::ListSandboxesRequest::default())
            .await,
        Code::Unauthenticated,
        "the API still needs a key",
    );
}

#[tokio::test]
async fn without_authentication_only_loopback_and_unix_sockets_are_served() {
    let data = tempfile::tempdir().unwrap();
    let args = |listen: &str, auth: Option<&str>| ServeArgs {
        listen: Some(listen.into()),
        data_dir: Some(data.path().to_path_buf()),
        auth: auth.map(Into::into),
        agent_binary: Some(env!("CARGO_BIN_EXE_paddock").into()),
        provider: Some("process".into()),
        ..ServeArgs::default()
    };
    let config = ServerConfig::resolve(args("0.0.0.0:0", Some("none"))).unwrap();
    let refused = paddock::server::Server::start(config)
        .await
        .err()
        .expect("no open server on every interface");
    let message = format!("{refused:#}");
    assert!(
        message.contains("refusing to listen on 0.0.0.0:0 without authentication")
            && message.contains("--auth keys"),
        "{message}"
    );
    // Unless told, a server reachable from elsewhere requires keys, and one
    // on loopback or a Unix socket does not.
    assert_eq!(
        ServerConfig::resolve(args("0.0.0.0:0", None)).unwrap().auth,
        AuthMode::Keys
    );
    assert_eq!(
        ServerConfig::resolve(args("127.0.0.1:0", None))
            .unwrap()
            .auth,
        AuthMode::None
    );
    let socket = data.path().join("api.sock");
    let config =
        ServerConfig::resolve(args(&format!("unix:{}", socket.display()), Some("none"))).unwrap();
    assert_eq!(config.auth, AuthMode::None);
    paddock::server::Server::start(config)
        .await
        .expect("a Unix socket may be open");
}

on_every_store!(
    calls_need_a_valid_unrevoked_key,
    reflection_can_be_opened_to_callers_without_a_key,
);
