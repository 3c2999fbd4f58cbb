//! Who reaches a sandbox's port: its tenant's keys, preview tokens for that
//! sandbox and port until they expire, anyone for a public port, and
//! nobody else; the sandbox's server never sees these credentials.

use common::api_keys::{make_key, with_header};
use paddock::pb::sandbox_service_client::SandboxServiceClient;

use super::*;

/// A server requiring API keys, with a preview proxy.
async fn keyed_server() -> TestServer {
    TestServer::start_with(|args| {
        args.auth = Some("keys".into());
        args.preview.preview_listen = Some("127.0.0.1:0".into());
    })
    .await
}

/// A port service client with `key`.
async fn ports_with(server: &TestServer, key: &str) -> PortServiceClient<common::api_keys::Authed> {
    PortServiceClient::new(with_header(
        server.channel().await,
        Some(format!("Bearer {key}")),
    ))
}

/// A running sandbox of `key`'s tenant, serving [`PAGE`].
async fn serving_sandbox(server: &TestServer, key: &str) -> String {
    let channel = with_header(server.channel().await, Some(format!("Bearer {key}")));
    let id = SandboxServiceClient::new(channel.clone())
        .create_sandbox(pb::CreateSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap()
        .id;
    let mut exec = paddock::pb::exec_service_client::ExecServiceClient::new(channel);
    let run = |line: String| pb::RunCommandRequest {
        sandbox_id: id.clone(),
        spec: Some(pb::CommandSpec {
            shell: line,
            ..Default::default()
        }),
        ..Default::default()
    };
    exec.run_command(run(format!(
        "mkdir -p /tmp/www && echo '{PAGE}' > /tmp/www/index.html"
    )))
    .await
    .unwrap();
    exec.start_command(pb::StartCommandRequest {
        sandbox_id: id.clone(),
        spec: run(format!(
            "exec busybox httpd -f -p 127.0.0.1:{HTTP_PORT} -h /tmp/www"
        ))
        .spec,
    })
    .await
    .unwrap();
    id
}

async fn get(server: &TestServer, id: &str, headers: &str) -> (u16, String, String) {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n{headers}",
        preview_path(id, HTTP_PORT)
    );
    let (status, head, body) = http(server.preview_addr.unwrap(), &request).await;
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

async fn preview_url(
    server: &TestServer,
    key: &str,
    id: &str,
    ttl: Option<prost_types::Duration>,
) -> Result<pb::CreatePreviewUrlResponse, tonic::Status> {
    ports_with(server, key)
        .await
        .create_preview_url(pb::CreatePreviewUrlRequest {
            sandbox_id: id.into(),
            port: u32::from(HTTP_PORT),
            ttl,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn keys_tokens_and_public_ports_admit_and_nothing_else_does() {
    let server = keyed_server().await;
    let alice = make_key(&server, "alice");
    let mallory = make_key(&server, "mallory");
    let id = serving_sandbox(&server, &alice).await;
    let other = serving_sandbox(&server, &alice).await;
    let alice_header = format!("Authorization: Bearer {alice}");
    eventually(Duration::from_secs(20), "httpd answers", || async {
        (get(&server, &id, &alice_header).await.0 == 200).then_some(())
    })
    .await;

    let (status, _, body) = get(&server, &id, "").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not public"), "{body}");
    let (status, _, body) = get(&server, &id, &alice_header).await;
    assert_eq!((status, body.trim()), (200, PAGE));
    let (status, _, body) = get(&server, &id, &format!("Authorization: Bearer {mallory}")).await;
    assert_eq!(
        status, 404,
        "another tenant's sandbox does not exist: {body}"
    );

    // Through gRPC too, another tenant's sandbox does not exist.
    let stranger = ports_with(&server, &mallory)
        .await
        .create_preview_url(pb::CreatePreviewUrlRequest {
            sandbox_id: id.clone(),
            port: 8000,
            ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::NotFound);

    // A preview URL signs its holder in with a cookie of that port only.
    let preview = preview_url(&server, &alice, &id, None).await.unwrap();
    assert!(
        preview
            .url
            .starts_with(&format!("http://{}", preview_host(&server, &id, HTTP_PORT))),
        "{}",
        preview.url
    );
    let path_and_query = preview.path_url.split_once("localhost").unwrap().1;
    let path_and_query = &path_and_query[path_and_query.find('/').unwrap()..];
    let (status, head, _) = http(
        server.preview_addr.unwrap(),
        &format!("GET {path_and_query} HTTP/1.1\r\nHost: x"),
    )
    .await;
    assert_eq!(status, 303, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains(&format!("location: {}", preview_path(&id, HTTP_PORT))));
    assert!(
        head.contains("set-cookie: paddock_preview_token="),
        "{head}"
    );
    assert!(head.contains("httponly"), "{head}");
    let cookie = format!("Cookie: paddock_preview_token={}", preview.token);
    let (status, _, body) = get(&server, &id, &cookie).await;
    assert_eq!((status, body.trim()), (200, PAGE));
    let (status, _, _) = get(
        &server,
        &id,
        &format!("X-Paddock-Preview-Token: {}", preview.token),
    )
    .await;
    assert_eq!(status, 200);

    // ... and to nothing else.
    let (status, _, body) = get(&server, &other, &cookie).await;
    assert_eq!(status, 403, "{body}");
    let short = preview_url(
        &server,
        &alice,
        &id,
        Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, body) = get(
        &server,
        &id,
        &format!("Cookie: paddock_preview_token={}", short.token),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body.contains("expired"), "{body}");
    let forged = format!("{}x", preview.token);
    assert_eq!(
        get(&server, &id, &format!("X-Paddock-Preview-Token: {forged}"))
            .await
            .0,
        401
    );

    // A public port needs nothing; the sandbox lists it with its URLs.
    let exposed = ports_with(&server, &alice)
        .await
        .expose_port(pb::ExposePortRequest {
            sandbox_id: id.clone(),
            port: u32::from(HTTP_PORT),
        })
        .await
        .unwrap()
        .into_inner()
        .exposed_port
        .unwrap();
    assert_eq!(exposed.port, u32::from(HTTP_PORT));
    assert!(exposed.path_url.ends_with(&preview_path(&id, HTTP_PORT)));
    let (status, _, body) = get(&server, &id, "").await;
    assert_eq!((status, body.trim()), (200, PAGE));
    let listed = SandboxServiceClient::new(with_header(
        server.channel().await,
        Some(format!("Bearer {alice}")),
    ))
    .get_sandbox(pb::GetSandboxRequest {
        sandbox_id: id.clone(),
    })
    .await
    .unwrap()
    .into_inner()
    .sandbox
    .unwrap()
    .exposed_ports;
    assert_eq!(listed, [exposed]);
    let refused = ports_with(&server, &mallory)
        .await
        .expose_port(pb::ExposePortRequest {
            sandbox_id: other.clone(),
            port: 80,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    ports_with(&server, &alice)
        .await
        .unexpose_port(pb::UnexposePortRequest {
            sandbox_id: id.clone(),
            port: u32::from(HTTP_PORT),
        })
        .await
        .unwrap();
    assert_eq!(get(&server, &id, "").await.0, 401);
}

#[tokio::test]
async fn the_sandbox_never_sees_the_proxys_credentials() {
    let server = keyed_server().await;
    let alice = make_key(&server, "alice");
    let id = serving_sandbox(&server, &alice).await;
    let preview = ports_with(&server, &alice)
        .await
        .create_preview_url(pb::CreatePreviewUrlRequest {
            sandbox_id: id.clone(),
            port: 8200,
            ttl: None,
        })
        .await
        .unwrap()
        .into_inner();
    let channel = with_header(server.channel().await, Some(format!("Bearer {alice}")));
    let mut exec = paddock::pb::exec_service_client::ExecServiceClient::new(channel);
    // A server that records the head of each request it gets, then answers.
    let record = |line: &str| pb::RunCommandRequest {
        sandbox_id: id.clone(),
        spec: Some(pb::CommandSpec {
            shell: line.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    exec.run_command(record(
        "cat > /tmp/record.sh <<'RECORD'\n#!/bin/sh\n\
         while IFS= read -r line; do\n\
           printf '%s\\n' \"$line\" >> /tmp/request\n\
           [ -z \"$(printf '%s' \"$line\" | tr -d '\\r')\" ] && break\n\
         done\n\
         printf 'HTTP/1.0 200 OK\\r\\n\\r\\nrecorded'\nRECORD\n\
         chmod +x /tmp/record.sh",
    ))
    .await
    .unwrap();
    exec.start_command(pb::StartCommandRequest {
        sandbox_id: id.clone(),
        spec: record("exec busybox nc -ll -p 8200 -e /tmp/record.sh").spec,
    })
    .await
    .unwrap();
    let proxy = server.preview_addr.unwrap();
    let request = format!(
        "GET /preview/{id}/8200/page?paddock_token={0}&q=1 HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {alice}\r\nX-Paddock-Preview-Token: {0}\r\n\
         Cookie: theme=dark; paddock_preview_token={0}",
        preview.token
    );
    // POST keeps the token in the query from turning into a redirect.
    let request = request.replacen("GET", "POST", 1) + "\r\nContent-Length: 0";
    eventually(Duration::from_secs(20), "the recorder answers", || async {
        let (status, _, body) = http(proxy, &request).await;
        (status == 200 && body == b"recorded").then_some(())
    })
    .await;
    let recorded = exec
        .run_command(pb::RunCommandRequest {
            sandbox_id: id.clone(),
            spec: Some(pb::CommandSpec {
                shell: "cat /tmp/request".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .stdout;
    let recorded = String::from_utf8_lossy(&recorded).to_ascii_lowercase();
    assert!(
        recorded.starts_with("post /page?q=1 http/1.1"),
        "{recorded}"
    );
    assert!(!recorded.contains("pdk_"), "the API key leaked: {recorded}");
    assert!(
        !recorded.contains(&preview.token.to_ascii_lowercase()),
        "the token leaked: {recorded}"
    );
    assert!(recorded.contains("cookie: theme=dark"), "{recorded}");
    assert!(
        recorded.contains("x-forwarded-for: 127.0.0.1"),
        "{recorded}"
    );
}

#[tokio::test]
async fn a_server_without_a_proxy_says_so() {
    let server = TestServer::start().await;
    let id = server.running_sandbox(Default::default()).await.id;
    let refused = PortServiceClient::new(server.channel().await)
        .create_preview_url(pb::CreatePreviewUrlRequest {
            sandbox_id: id,
            port: 80,
            ttl: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("--preview-listen"));
}
