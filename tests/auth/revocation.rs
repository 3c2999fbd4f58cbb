//! A revoked key's open streams end, on every replica, within a second.

use super::*;
use paddock::pb::exec_request::Request as Req;
use paddock::pb::exec_response::Response as Resp;
use std::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// An Exec stream running `cat` (which waits for input forever), open once
/// the agent says the command started.
async fn open_exec(
    clients: &mut Clients,
    sandbox_id: &str,
) -> (
    tokio::sync::mpsc::Sender<pb::ExecRequest>,
    tonic::Streaming<pb::ExecResponse>,
) {
    let (requests, rx) = tokio::sync::mpsc::channel(4);
    requests
        .send(pb::ExecRequest {
            request: Some(Req::Start(pb::ExecStart {
                sandbox_id: sandbox_id.into(),
                spec: Some(pb::CommandSpec {
                    command: vec!["cat".into()],
                    ..Default::default()
                }),
                ..Default::default()
            })),
        })
        .await
        .unwrap();
    let mut responses = clients
        .exec
        .exec(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    match responses.message().await.unwrap().and_then(|r| r.response) {
        Some(Resp::Started(_)) => {}
        other => panic!("expected the command to start, got {other:?}"),
    }
    (requests, responses)
}

/// Reads `stream` until it ends; the status it ended with.
async fn ending<T>(mut stream: tonic::Streaming<T>) -> Status {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("the stream ended cleanly, not with the revocation"),
            Ok(Err(status)) => return status,
            Err(_) => panic!("the stream was still open 5 s after the revocation"),
        }
    }
}

async fn open_streams_end_when_their_key_is_revoked(store: Store) {
    let Some(first) = keyed_server(store).await else {
        return;
    };
    // A second replica on the same store: revocation reaches its streams
    // too, though the key is revoked elsewhere.
    let sqlite = format!("sqlite://{}", first.data_dir.join("paddock.db").display());
    let database_url = first.database_url.clone().unwrap_or(sqlite);
    let second = TestServer::start_with(|args: &mut ServeArgs| {
        args.auth = Some("keys".into());
        args.database_url = Some(database_url);
    })
    .await;
    let key = make_key(&first, "team-a");
    let mut streams = Vec::new();
    for server in [&first, &second] {
        let mut team_a = clients(server, Some(&key)).await;
        let sandbox = team_a
            .sandboxes
            .create_sandbox(pb::CreateSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .sandbox
            .unwrap();
        let mut watch = team_a
            .sandboxes
            .watch_sandboxes(pb::WatchSandboxesRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(
            watch.message().await.unwrap().is_some(),
            "the watch is open"
        );
        let (input, exec) = open_exec(&mut team_a, &sandbox.id).await;
        streams.push((watch, input, exec));
    }

    let id = keys(&first, &["list"])
        .unwrap()
        .lines()
        .find_map(|line| line.split_whitespace().find(|w| w.starts_with("key_")))
        .expect("a key id")
        .to_owned();
    keys(&first, &["revoke", &id]).unwrap();
    let revoked_at = Instant::now();
    let mut endings = Vec::new();
    for (watch, input, exec) in streams {
        endings.push(tokio::spawn(ending(watch)));
        endings.push(tokio::spawn(async move {
            let status = ending(exec).await;
            drop(input);
            status
        }));
    }
    for ended in endings {
        let status = ended.await.unwrap();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(status.message(), "the API key was revoked");
    }
    assert!(
        revoked_at.elapsed() < Duration::from_secs(1),
        "every stream ended within a second of the revocation: {:?}",
        revoked_at.elapsed()
    );
}

on_every_store!(open_streams_end_when_their_key_is_revoked);
