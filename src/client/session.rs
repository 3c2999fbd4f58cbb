//! The terminal's side of an Exec stream: output printed as it comes,
//! stdin, window sizes and signals passed to the remote command, and its end
//! as a shell exit status.

use std::io::Write;
use std::os::fd::AsFd;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::terminal::size;
use crate::pb;
use crate::pb::exec_request::Request as Req;
use crate::pb::exec_response::Response as Resp;

/// Prints an Exec stream's output (stdout and stderr to ours) until the
/// command ends, and returns how it ended.
pub async fn print_until_exit(
    responses: &mut tonic::Streaming<pb::ExecResponse>,
) -> anyhow::Result<pb::ExecExited> {
    print_output(responses, None)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the stream ended before the command did"))
}

/// Prints an Exec stream's output until the command ends, and returns how
/// it ended. With `until_seq`, stops early, returning `None`, once the chunk
/// of that number has been printed (the output there was when `paddock
/// logs` began) and the command is still running.
pub async fn print_output(
    responses: &mut tonic::Streaming<pb::ExecResponse>,
    until_seq: Option<i64>,
) -> anyhow::Result<Option<pb::ExecExited>> {
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    if until_seq == Some(0) {
        return Ok(None);
    }
    loop {
        match responses.message().await? {
            Some(pb::ExecResponse {
                response: Some(Resp::Output(output)),
            }) => {
                let sink: &mut dyn Write = if output.stream() == pb::OutputStream::Stderr {
                    &mut stderr
                } else {
                    &mut stdout
                };
                sink.write_all(&output.data)?;
                sink.flush()?;
                if until_seq.is_some_and(|last| output.seq >= last) {
                    return Ok(None);
                }
            }
            Some(pb::ExecResponse {
                response: Some(Resp::OutputLost(lost)),
            }) => eprintln!(
                "paddock: output chunks {} to {} are no longer kept",
                lost.first_seq, lost.last_seq
            ),
            Some(pb::ExecResponse {
                response: Some(Resp::Exited(exited)),
            }) => return Ok(Some(exited)),
            Some(_) => {}
            None => anyhow::bail!("the server ended the stream before the command ended"),
        }
    }
}

/// The shell-style exit status of a command that ended so.
pub fn exit_status(exited: &pb::ExecExited) -> u8 {
    if exited.timed_out {
        return 124;
    }
    if let Some(code) = exited.exit_code {
        return (code & 0xff) as u8;
    }
    let number = match exited.signal.as_str() {
        "SIGHUP" => libc::SIGHUP,
        "SIGINT" => libc::SIGINT,
        "SIGQUIT" => libc::SIGQUIT,
        "SIGABRT" => libc::SIGABRT,
        "SIGKILL" => libc::SIGKILL,
        "SIGSEGV" => libc::SIGSEGV,
        "SIGPIPE" => libc::SIGPIPE,
        "SIGTERM" => libc::SIGTERM,
        _ => return 255,
    };
    128 + number as u8
}

pub async fn send(requests: &mpsc::Sender<pb::ExecRequest>, request: Req) -> bool {
    requests
        .send(pb::ExecRequest {
            request: Some(request),
        })
        .await
        .is_ok()
}

pub async fn forward_stdin(requests: mpsc::Sender<pb::ExecRequest>) {
    let mut stdin = tokio::io::stdin();
    let mut buffer = vec![0; 64 << 10];
    loop {
        match stdin.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !send(&requests, Req::Stdin(Bytes::copy_from_slice(&buffer[..n]))).await {
                    return;
                }
            }
        }
    }
    let _ = send(&requests, Req::CloseStdin(pb::CloseStdin {})).await;
}

pub async fn forward_resizes(requests: mpsc::Sender<pb::ExecRequest>) {
    let Ok(mut resizes) = signal(SignalKind::window_change()) else {
        return;
    };
    while resizes.recv().await.is_some() {
        if let Some((rows, cols)) = size(std::io::stdin().as_fd())
            && !send(&requests, Req::Resize(pb::Resize { rows, cols })).await
        {
            return;
        }
    }
}

/// Without a terminal, Ctrl-C and friends reach the remote command.
pub async fn forward_signals(requests: mpsc::Sender<pb::ExecRequest>) {
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    loop {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            _ = hangup.recv() => "SIGHUP",
        };
        if !send(&requests, Req::Signal(pb::Signal { name: name.into() })).await {
            return;
        }
    }
}
