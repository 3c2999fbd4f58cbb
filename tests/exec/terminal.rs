//! Commands with a terminal: echo, window size and resizes.

use super::*;

async fn a_tty_shell_echoes_and_sees_resizes(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let id = sandbox(&server).await;
    let mut client = exec_client(&server).await;
    let mut shell = Session::start(
        &mut client,
        &id,
        pb::CommandSpec {
            command: vec!["/bin/sh".into()],
            tty: true,
            rows: 24,
            cols: 80,
            ..Default::default()
        },
    )
    .await;
    // The terminal echoes input, and the shell may print its prompt before or after that echo:
    // the quotes keep the echoed line from containing what only the command prints.
    shell
        .send(Req::Stdin(Bytes::from_static(b"echo h''i\n")))
        .await;
    shell.read_until("hi\r\n").await;
    shell
        .send(Req::Resize(pb::Resize {
            rows: 40,
            cols: 120,
        }))
        .await;
    shell
        .send(Req::Stdin(Bytes::from_static(b"stty size\n")))
        .await;
    shell.read_until("40 120").await;
    shell
        .send(Req::Stdin(Bytes::from_static(b"exit 5\n")))
        .await;
    let (_, exited) = shell.finish().await;
    assert_eq!(exited.exit_code, Some(5));
}

on_every_provider!(a_tty_shell_echoes_and_sees_resizes,);
