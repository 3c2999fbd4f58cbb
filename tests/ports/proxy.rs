//! The preview proxy on every provider: HTTP by path and by host name, and
//! a WebSocket echoed by a server in the sandbox, through a real WebSocket
//! client.

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::*;

/// The port of the WebSocket echo server.
const WS_PORT: u16 = 8100;

/// A WebSocket echo server for one connection, in POSIX sh with the tools
/// of busybox and coreutils alike (`nc -ll -e` runs it per connection):
/// the handshake, then small frames unmasked and sent back.
const WS_ECHO: &str = r#"#!/bin/sh
key=
while IFS= read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in
    [Ss]ec-[Ww]eb[Ss]ocket-[Kk]ey:*) key=$(printf '%s' "${line#*:}" | tr -d ' ') ;;
  esac
done
hex=$(printf '%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11' "$key" | sha1sum | cut -c1-40)
bin=
while [ -n "$hex" ]; do
  rest=${hex#??}; byte=${hex%"$rest"}; hex=$rest
  bin="$bin\\$(printf '%03o' "0x$byte")"
done
accept=$(printf "$bin" | base64)
printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n' "$accept"
while :; do
  set -- $(dd bs=1 count=2 2>/dev/null | od -An -tu1)
  [ $# -eq 2 ] || exit 0
  opcode=$(( $1 & 15 )); len=$(( $2 & 127 ))
  if [ "$opcode" -eq 8 ]; then printf '\210\000'; exit 0; fi
  set -- $(dd bs=1 count=$(( len + 4 )) 2>/dev/null | od -An -tu1 -v)
  m0=$1 m1=$2 m2=$3 m3=$4; shift 4
  out= i=0
  for b in "$@"; do
    case $(( i % 4 )) in 0) m=$m0;; 1) m=$m1;; 2) m=$m2;; *) m=$m3;; esac
    out="$out\\$(printf '%03o' $(( b ^ m )))"
    i=$(( i + 1 ))
  done
  printf "\\$(printf '%03o' $(( 128 | opcode )))\\$(printf '%03o' "$len")$out"
done
"#;

async fn http_reaches_the_sandbox_through_the_proxy(provider: Provider) {
    let server = server_with_previews(provider).await;
    let id = offline_sandbox(&server).await;
    serve_page(&server, &id).await;
    let proxy = server.preview_addr.unwrap();

    let (status, _, body) = http(
        proxy,
        &format!(
            "GET {}index.html HTTP/1.1\r\nHost: anything",
            preview_path(&id, HTTP_PORT)
        ),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(String::from_utf8_lossy(&body).trim(), PAGE);

    let host = preview_host(&server, &id, HTTP_PORT);
    let (status, _, body) = http(proxy, &format!("GET / HTTP/1.1\r\nHost: {host}")).await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&body).trim(), PAGE);

    // A kept-alive connection carries several requests.
    let mut stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    for _ in 0..3 {
        stream
            .write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = vec![0; 4096];
        let mut got = 0;
        while !String::from_utf8_lossy(&answer[..got]).contains(PAGE) {
            let read = stream.read(&mut answer[got..]).await.unwrap();
            assert!(read > 0, "the connection stays open");
            got += read;
        }
    }

    let (status, _, _) = http(proxy, "GET / HTTP/1.1\r\nHost: example.com").await;
    assert_eq!(status, 404, "a name that is no preview");
}

async fn a_websocket_echoes_through_the_proxy(provider: Provider) {
    let server = server_with_previews(provider).await;
    let id = offline_sandbox(&server).await;
    server
        .shell(
            &id,
            &format!("cat > /tmp/ws.sh <<'WS_ECHO'\n{WS_ECHO}WS_ECHO\nchmod +x /tmp/ws.sh"),
        )
        .await;
    detach(
        &server,
        &id,
        &format!("exec busybox nc -ll -p {WS_PORT} -e /tmp/ws.sh"),
    )
    .await;
    listening(&server, &id, WS_PORT).await;

    let url = format!(
        "ws://{}{}",
        server.preview_addr.unwrap(),
        preview_path(&id, WS_PORT)
    );
    let (mut socket, answer) = tokio_tungstenite::connect_async(&url)
        .await
        .unwrap_or_else(|error| panic!("the WebSocket opens: {error}"));
    assert_eq!(answer.status(), 101);
    for text in ["hello through the proxy", "and again"] {
        socket.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("an echo comes back")
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    socket.close(None).await.unwrap();
}

on_every_provider!(
    http_reaches_the_sandbox_through_the_proxy,
    a_websocket_echoes_through_the_proxy,
);
