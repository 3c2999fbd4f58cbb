//! PortForward and `paddock port-forward` to a server in a sandbox with no
//! network, on every provider.

use super::*;

async fn an_http_server_answers_through_a_forward_and_the_cli(provider: Provider) {
    let server = server_with_previews(provider).await;
    let id = offline_sandbox(&server).await;
    serve_page(&server, &id).await;

    let forward = Forward::open(&server, &id, HTTP_PORT).await.unwrap();
    assert_eq!(forward.address, format!("127.0.0.1:{HTTP_PORT}"));
    let (answer, ended) = forward.exchange(b"GET / HTTP/1.0\r\n\r\n").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains(PAGE), "{answer}");
    ended.expect("the forward ends OK once both sides are done");

    // Several forwards at once, each its own connection.
    let many = futures::future::join_all((0..8).map(|_| async {
        let forward = Forward::open(&server, &id, HTTP_PORT).await.unwrap();
        forward.exchange(b"GET / HTTP/1.0\r\n\r\n").await
    }))
    .await;
    for (answer, ended) in many {
        assert!(String::from_utf8_lossy(&answer).contains(PAGE));
        ended.unwrap();
    }

    // The CLI, as a user runs it.
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(["port-forward", "--server"])
        .arg(format!("http://{}", server.addr))
        .arg(&id)
        .arg(format!(":{HTTP_PORT}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(cli.stdout.take().unwrap()),
        &mut first_line,
    )
    .unwrap();
    let local: SocketAddr = first_line
        .strip_prefix("Forwarding from ")
        .and_then(|rest| rest.split(" -> ").next())
        .unwrap_or_else(|| panic!("the CLI says where it listens: {first_line:?}"))
        .parse()
        .unwrap();
    assert!(first_line.trim_end().ends_with(&format!("-> {HTTP_PORT}")));
    for _ in 0..3 {
        let (status, _, body) = http(local, "GET / HTTP/1.1\r\nHost: x").await;
        assert_eq!(status, 200);
        assert_eq!(String::from_utf8_lossy(&body).trim(), PAGE);
    }
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(cli.id() as i32, libc::SIGINT) };
    let ended = cli.wait_with_output().unwrap();
    assert!(
        ended.status.success(),
        "Ctrl-C ends it cleanly: {:?} {}",
        ended.status,
        String::from_utf8_lossy(&ended.stderr)
    );
}

async fn a_port_with_nothing_listening_is_refused_with_a_sentence(provider: Provider) {
    let server = server_with_previews(provider).await;
    let id = offline_sandbox(&server).await;
    let refused = Forward::open(&server, &id, 3000).await.err().unwrap();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "refused: nothing listens on port 3000 in the sandbox"
    );
    let (status, _, body) = http(
        server.preview_addr.unwrap(),
        &format!("GET {} HTTP/1.1\r\nHost: x", preview_path(&id, 3000)),
    )
    .await;
    assert_eq!(status, 502);
    assert!(
        String::from_utf8_lossy(&body).contains("nothing listens on port 3000"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // Only the sandbox's own addresses are dialled.
    let elsewhere = Forward::open_at(&server, &id, 80, "192.0.2.1")
        .await
        .err()
        .unwrap();
    assert_eq!(elsewhere.code(), Code::InvalidArgument);
    assert!(
        elsewhere
            .message()
            .contains("not an address of the sandbox")
    );
}

async fn a_forward_counts_as_activity(provider: Provider) {
    let server = server_with_previews(provider).await;
    let id = offline_sandbox(&server).await;
    serve_page(&server, &id).await;
    let before = server.get(&id).await.last_activity_time.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (answer, _) = Forward::open(&server, &id, HTTP_PORT)
        .await
        .unwrap()
        .exchange(b"GET / HTTP/1.0\r\n\r\n")
        .await;
    assert!(!answer.is_empty());
    let after = server.get(&id).await.last_activity_time.unwrap();
    assert!(
        (after.seconds, after.nanos) > (before.seconds, before.nanos),
        "{before:?} -> {after:?}"
    );
}

on_every_provider!(
    an_http_server_answers_through_a_forward_and_the_cli,
    a_port_with_nothing_listening_is_refused_with_a_sentence,
    a_forward_counts_as_activity,
);
