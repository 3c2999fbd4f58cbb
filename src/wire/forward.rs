//! Moving one forwarded TCP connection's bytes between a socket and a
//! stream of messages, for every hop of a port forward alike: the agent
//! beside the sandbox's server, the preview proxy in the control plane and
//! the `paddock port-forward` client.
//!
//! Each direction is a loop that holds one read buffer, and hands what it
//! read to a bounded channel or writes it before reading more: a slow peer
//! back-pressures the other side instead of being buffered for.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The most bytes one message carries: large enough that a bulk transfer
/// pays for few messages, small enough that a forward holds little.
pub const CHUNK_BYTES: usize = 256 << 10;

/// How many messages a direction may have in flight before its reader waits.
pub const CHANNEL_MESSAGES: usize = 4;

/// What one message of a forward carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes for the other end.
    Data(Bytes),
    /// This direction is over: the other end reads end of file.
    CloseWrite,
}

/// How a direction ended when it did not end cleanly.
#[derive(Debug)]
pub enum PumpError<E> {
    /// Reading or writing the socket failed.
    Socket(std::io::Error),
    /// The message stream failed.
    Messages(E),
}

/// Reads `socket` until end of file, sending each chunk through `send` as
/// `wrap(Piece::Data)`, then `wrap(Piece::CloseWrite)`. Stops early, with
/// `Ok`, when the channel's receiver is gone (nobody wants the bytes).
pub async fn socket_to_messages<T>(
    mut socket: impl AsyncRead + Unpin,
    send: &mpsc::Sender<T>,
    wrap: impl Fn(Piece) -> T,
) -> std::io::Result<()> {
    let mut buffer = BytesMut::with_capacity(CHUNK_BYTES);
    loop {
        buffer.reserve(CHUNK_BYTES);
        let read = socket.read_buf(&mut buffer).await?;
        let piece = if read == 0 {
            Piece::CloseWrite
        } else {
            Piece::Data(buffer.split().freeze())
        };
        let last = piece == Piece::CloseWrite;
        if send.send(wrap(piece)).await.is_err() || last {
            return Ok(());
        }
    }
}

/// Writes the data of `pieces` to `socket`, shutting its write side down at
/// `Piece::CloseWrite` or when the stream ends (a caller that closed its
/// side). Pieces after a close are ignored.
pub async fn messages_to_socket<E>(
    mut socket: impl AsyncWrite + Unpin,
    pieces: impl Stream<Item = Result<Piece, E>>,
) -> Result<(), PumpError<E>> {
    futures::pin_mut!(pieces);
    while let Some(piece) = pieces.next().await {
        match piece.map_err(PumpError::Messages)? {
            Piece::Data(data) => socket.write_all(&data).await.map_err(PumpError::Socket)?,
            Piece::CloseWrite => break,
        }
    }
    socket.shutdown().await.map_err(PumpError::Socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_socket_reads_into_chunks_then_a_close() {
        let (mut near, far) = tokio::io::duplex(1 << 20);
        let (send, mut receive) = mpsc::channel(CHANNEL_MESSAGES);
        let reading = tokio::spawn(async move { socket_to_messages(far, &send, |p| p).await });
        near.write_all(&vec![7u8; 2 * CHUNK_BYTES + 100])
            .await
            .unwrap();
        drop(near);
        let mut bytes = 0;
        let mut pieces = 0;
        while let Piece::Data(data) = receive.recv().await.unwrap() {
            assert!(data.len() <= CHUNK_BYTES, "a chunk of {} bytes", data.len());
            bytes += data.len();
            pieces += 1;
        }
        assert_eq!(bytes, 2 * CHUNK_BYTES + 100);
        assert!(pieces >= 3, "{pieces} pieces");
        reading.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn messages_write_then_shut_the_socket_down() {
        let (near, mut far) = tokio::io::duplex(1 << 10);
        let pieces = futures::stream::iter([
            Ok::<_, ()>(Piece::Data(Bytes::from_static(b"hello "))),
            Ok(Piece::Data(Bytes::from_static(b"world"))),
            Ok(Piece::CloseWrite),
            Ok(Piece::Data(Bytes::from_static(b"ignored"))),
        ]);
        let writing = tokio::spawn(messages_to_socket(near, pieces));
        let mut read = String::new();
        far.read_to_string(&mut read).await.unwrap();
        assert_eq!(read, "hello world");
        assert!(writing.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_failed_stream_is_reported_as_such() {
        let (near, _far) = tokio::io::duplex(1 << 10);
        let pieces = futures::stream::iter([Err::<Piece, _>("reset")]);
        assert!(matches!(
            messages_to_socket(near, pieces).await,
            Err(PumpError::Messages("reset"))
        ));
    }
}
