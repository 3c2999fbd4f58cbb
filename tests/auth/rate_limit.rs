//! Each API key is held to its own rate of calls.

use super::*;

async fn each_key_is_held_to_its_rate_limit_alone(store: Store) {
    let Some(server) = TestServer::on(store, |args: &mut ServeArgs| {
        args.auth = Some("keys".into());
        args.key_rate_limit = Some(5);
    })
    .await
    else {
        return;
    };
    let busy = make_key(&server, "alpha");
    let quiet = make_key(&server, "beta");
    let mut busy_clients = clients(&server, Some(&busy)).await;
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        outcomes.push(
            busy_clients
                .sandboxes
                .list_sandboxes(pb::ListSandboxesRequest::default())
                .await,
        );
    }
    let admitted = outcomes.iter().filter(|o| o.is_ok()).count();
    assert!(
        (5..20).contains(&admitted),
        "a burst of 20 at 5/s admits the first 5 (and what refills meanwhile): {admitted}"
    );
    let refused = outcomes.into_iter().find(Result::is_err).unwrap();
    assert_refused(
        refused,
        Code::ResourceExhausted,
        "over the rate limit",
        "rate limit of 5 calls per second",
    );

    // Another key of the server is not held up by the first one's burst.
    clients(&server, Some(&quiet))
        .await
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("another key is under its own limit");
    // And the first key is admitted again once its second has passed.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    busy_clients
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("the key is admitted again after a quiet second");
}

on_every_store!(each_key_is_held_to_its_rate_limit_alone);
