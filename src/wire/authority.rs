//! Stock gRPC clients on a Unix socket, with no client option.
//!
//! grpc-core (Python's `grpcio`, Ruby, PHP…) and grpc-go's tools (grpcurl
//! `-unix`) name a Unix-socket connection by its path: the HTTP/2
//! `:authority` of every call is `tmp%2Fpaddock.sock` or
//! `/tmp/paddock.sock`. That is no URI authority, and the server's HTTP/2
//! layer (h2) resets every such stream with `PROTOCOL_ERROR` before the
//! call reaches any service, so each call fails with `INTERNAL`.
//!
//! [`MendAuthority`] sits between the socket and h2 and rewrites the
//! header blocks the client sends: each block is decoded with the client's
//! HPACK table, an `:authority` that is not a URI authority becomes
//! `localhost` (what gRPC clients send when told to), and the block is
//! encoded again as literals that never enter h2's table, so the two tables
//! cannot disagree. Every other frame, and all the bytes the server writes,
//! pass through untouched; a frame's payload is read straight into the
//! caller's buffer. A connection that does not open with HTTP/2's preface is
//! passed through as it is.
//!
//! Only Unix sockets need it: over TCP clients send `host:port`.

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// What every HTTP/2 client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame every HTTP/2 peer accepts, whatever its settings say.
const SMALLEST_MAX_FRAME: usize = 16 << 10;
/// HTTP/2's default `SETTINGS_HEADER_TABLE_SIZE`, which the server keeps:
/// the largest HPACK table a client may ask its peer to hold.
const HEADER_TABLE_SIZE: usize = 4096;
/// The largest header block accepted from a client, over all its frames.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// What a path-like `:authority` becomes.
const LOCAL_AUTHORITY: &[u8] = b"localhost";

/// A server-side connection whose client's `:authority` h2 will accept.
pub struct MendAuthority<T> {
    inner: T,
    /// Bytes read from the client and not yet handed on.
    read: BytesMut,
    /// Bytes ready to hand to h2.
    ready: BytesMut,
    phase: Phase,
    /// The client's HPACK table, as the client's encoder keeps it.
    decoder: loona_hpack::Decoder<'static>,
    /// A header block waiting for its CONTINUATION frames.
    block: Option<OpenBlock>,
}

enum Phase {
    /// The preface has not been read in full yet.
    Preface,
    /// Between frames.
    FrameStart,
    /// Inside a frame that passes through: this many payload bytes remain.
    PassThrough(usize),
    /// Not HTTP/2: everything passes through.
    Transparent,
}

/// The first HEADERS frame of a block, with the fragments read so far.
struct OpenBlock {
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    fragments: BytesMut,
}

impl<T> MendAuthority<T> {
    /// Wraps a connection the server has just accepted.
    pub fn new(inner: T) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            inner,
            read: BytesMut::with_capacity(SMALLEST_MAX_FRAME),
            ready: BytesMut::new(),
            phase: Phase::Preface,
            decoder,
            block: None,
        }
    }

    /// Moves what the bytes read so far allow into `ready`; false when more
    /// must be read first.
    fn advance(&mut self) -> io::Result<bool> {
        match self.phase {
            Phase::Preface => {
                let seen = self.read.len().min(PREFACE.len());
                if self.read[..seen] != PREFACE[..seen] {
                    self.phase = Phase::Transparent;
                    return Ok(true);
                }
                if seen < PREFACE.len() {
                    return Ok(false);
                }
                self.ready.extend_from_slice(&self.read.split_to(seen));
                self.phase = Phase::FrameStart;
                Ok(true)
            }
            Phase::FrameStart => {
                if self.read.len() < FRAME_HEADER_LEN {
                    return Ok(false);
                }
                let header = &self.read[..FRAME_HEADER_LEN];
                let len = usize::from(header[0]) << 16
                    | usize::from(header[1]) << 8
                    | usize::from(header[2]);
                let kind = header[3];
                if kind != HEADERS && kind != CONTINUATION {
                    if self.block.is_some() {
                        return Err(malformed("a header block was interrupted by another frame"));
                    }
                    self.ready
                        .extend_from_slice(&self.read.split_to(FRAME_HEADER_LEN));
                    self.phase = Phase::PassThrough(len);
                    return Ok(true);
                }
                if self.read.len() < FRAME_HEADER_LEN + len {
                    if len > MAX_HEADER_BLOCK {
                        return Err(malformed("a header frame is too large"));
                    }
                    return Ok(false);
                }
                let mut frame = self.read.split_to(FRAME_HEADER_LEN + len);
                let flags = frame[4];
                let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]);
                frame.advance(FRAME_HEADER_LEN);
                self.header_frame(kind, flags, stream_id, frame)?;
                Ok(true)
            }
            Phase::PassThrough(_) | Phase::Transparent => Ok(true),
        }
    }

    /// Takes a HEADERS or CONTINUATION frame's payload.
    fn header_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream_id: u32,
        mut payload: BytesMut,
    ) -> io::Result<()> {
        if kind == HEADERS {
            if self.block.is_some() {
                return Err(malformed("a header block was interrupted by another frame"));
            }
            if flags & PADDED != 0 {
                let padding =
                    usize::from(*payload.first().ok_or_else(|| malformed("no pad length"))?);
                if padding + 1 > payload.len() {
                    return Err(malformed("padding longer than its frame"));
                }
                payload.truncate(payload.len() - padding);
                payload.advance(1);
            }
            let priority = if flags & PRIORITY != 0 {
                let fields = payload
                    .get(..5)
                    .ok_or_else(|| malformed("no priority fields"))?;
                let fields = <[u8; 5]>::try_from(fields).expect("five bytes");
                payload.advance(5);
                Some(fields)
            } else {
                None
            };
            self.block = Some(OpenBlock {
                stream_id,
                flags,
                priority,
                fragments: payload,
            });
        } else {
            let block = self
                .block
                .as_mut()
                .filter(|block| block.stream_id == stream_id)
                .ok_or_else(|| malformed("a CONTINUATION frame without its HEADERS"))?;
            if block.fragments.len() + payload.len() > MAX_HEADER_BLOCK {
                return Err(malformed("a header block is too large"));
            }
            block.fragments.extend_from_slice(&payload);
            block.flags |= flags & END_HEADERS;
        }
        if self
            .block
            .as_ref()
            .is_some_and(|block| block.flags & END_HEADERS != 0)
        {
            let block = self.block.take().expect("checked above");
            self.emit(block)?;
        }
        Ok(())
    }

    /// Decodes a whole header block and writes it again for h2.
    fn emit(&mut self, block: OpenBlock) -> io::Result<()> {
        let mut encoded = BytesMut::with_capacity(block.fragments.len() + 64);
        self.decoder
            .decode_with_cb(&block.fragments, |name, value| {
                let value = if &*name == b":authority" && !is_authority(&value) {
                    Cow::Borrowed(LOCAL_AUTHORITY)
                } else {
                    value
                };
                encode_literal(&mut encoded, &name, &value);
            })
            .map_err(|e| malformed(&format!("a header block does not decode: {e:?}")))?;

        let mut payload = BytesMut::with_capacity(encoded.len() + 5);
        if let Some(priority) = block.priority {
            payload.extend_from_slice(&priority);
        }
        payload.extend_from_slice(&encoded);
        let mut kind = HEADERS;
        let mut flags = block.flags & (END_STREAM | PRIORITY);
        loop {
            let part = payload.split_to(payload.len().min(SMALLEST_MAX_FRAME));
            let last = payload.is_empty();
            if last {
                flags |= END_HEADERS;
            }
            let len = u32::try_from(part.len()).expect("at most 16 KiB");
            self.ready.put_slice(&len.to_be_bytes()[1..]);
            self.ready.put_u8(kind);
            self.ready.put_u8(flags);
            self.ready.put_u32(block.stream_id);
            self.ready.extend_from_slice(&part);
            if last {
                return Ok(());
            }
            kind = CONTINUATION;
            flags = 0;
        }
    }
}

/// Whether h2 takes `value` as an `:authority`.
fn is_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// One header as an HPACK "literal header field without indexing — new
/// name" (RFC 7541, 6.2.2), strings not Huffman-coded: nothing enters the
/// receiver's table.
fn encode_literal(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_u8(0);
    for string in [name, value] {
        encode_integer(out, string.len(), 7, 0);
        out.extend_from_slice(string);
    }
}

/// An HPACK integer with an N-bit prefix (RFC 7541, 5.1).
fn encode_integer(out: &mut BytesMut, mut value: usize, prefix_bits: u8, high_bits: u8) {
    let prefix_max = (1usize << prefix_bits) - 1;
    if value < prefix_max {
        out.put_u8(high_bits | value as u8);
        return;
    }
    out.put_u8(high_bits | prefix_max as u8);
    value -= prefix_max;
    while value >= 0x80 {
        out.put_u8((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 from a Unix-socket client: {what}"),
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for MendAuthority<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready.split_to(n));
                return Poll::Ready(Ok(()));
            }
            let passing = match this.phase {
                Phase::PassThrough(0) => {
                    this.phase = Phase::FrameStart;
                    continue;
                }
                Phase::PassThrough(left) => Some(left),
                Phase::Transparent => Some(usize::MAX),
                Phase::Preface | Phase::FrameStart => None,
            };
            if let Some(left) = passing {
                let n = if this.read.is_empty() {
                    let want = left.min(buf.remaining());
                    let mut direct = ReadBuf::new(buf.initialize_unfilled_to(want));
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut direct))?;
                    let n = direct.filled().len();
                    buf.advance(n);
                    n
                } else {
                    let n = this.read.len().min(left).min(buf.remaining());
                    buf.put_slice(&this.read.split_to(n));
                    n
                };
                if let Phase::PassThrough(left) = &mut this.phase {
                    *left -= n;
                }
                return Poll::Ready(Ok(()));
            }
            if this.advance()? {
                continue;
            }
            let mut chunk = [0; SMALLEST_MAX_FRAME];
            let mut chunk = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            this.read.extend_from_slice(chunk.filled());
            if chunk.filled().is_empty() {
                // The client closed: h2 sees the end (a partial frame
                // included) as it would without us.
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MendAuthority<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for MendAuthority<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend([kind, flags]);
        out.extend(stream_id.to_be_bytes());
        out.extend(payload);
        out
    }

    /// Reads what the wrapper hands on, in reads of `chunk` bytes, and
    /// decodes its header blocks as h2 would.
    async fn mended(sent: Vec<u8>, chunk: usize) -> (Vec<u8>, Vec<Vec<(Vec<u8>, Vec<u8>)>>) {
        let mut wrapped = MendAuthority::new(std::io::Cursor::new(sent));
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let n = wrapped.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let mut blocks = Vec::new();
        let mut decoder = loona_hpack::Decoder::new();
        let mut rest = &out[PREFACE.len()..];
        let mut block = Vec::new();
        while rest.len() >= FRAME_HEADER_LEN {
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let (kind, flags) = (rest[3], rest[4]);
            let mut payload = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
            if kind == HEADERS && flags & PRIORITY != 0 {
                payload = &payload[5..];
            }
            if kind == HEADERS || kind == CONTINUATION {
                assert!(len <= SMALLEST_MAX_FRAME);
                block.extend_from_slice(payload);
                if flags & END_HEADERS != 0 {
                    blocks.push(decoder.decode(&block).unwrap());
                    block.clear();
                }
            }
            rest = &rest[FRAME_HEADER_LEN + len..];
        }
        assert!(rest.is_empty(), "whole frames");
        (out, blocks)
    }

    #[tokio::test]
    async fn a_path_authority_becomes_localhost_and_the_rest_passes_as_sent() {
        // Two requests as grpc-core encodes them: the second one indexes
        // the first one's headers from the client's dynamic table.
        let mut encoder = loona_hpack::Encoder::new();
        let first = encoder.encode([
            (
                &b":path"[..],
                &b"/paddock.v1.SandboxService/ListSandboxes"[..],
            ),
            (b":authority", b"tmp%2Fpaddock.sock"),
            (b"te", b"trailers"),
        ]);
        let second = encoder.encode([
            (
                &b":path"[..],
                &b"/paddock.v1.SandboxService/ListSandboxes"[..],
            ),
            // grpc-go's form of the same path.
            (b":authority", b"/tmp/paddock.sock"),
            (b"x-long", &[b'v'; 40_000][..]),
        ]);
        let data = frame(0x0, END_STREAM, 1, &[7; 70_000]);
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(0x4, 0, 0, &[]));
        sent.extend(frame(
            HEADERS,
            PRIORITY | END_HEADERS,
            1,
            &[&[0, 0, 0, 0, 15][..], &first[..]].concat(),
        ));
        sent.extend(data.clone());
        // The second block split over a padded HEADERS and a CONTINUATION.
        let (head, tail) = second.split_at(10);
        let padded = [&[3u8][..], head, &[0, 0, 0]].concat();
        sent.extend(frame(HEADERS, PADDED | END_STREAM, 3, &padded));
        sent.extend(frame(CONTINUATION, END_HEADERS, 3, tail));

        for chunk in [1, 7, 64 << 10] {
            let (out, blocks) = mended(sent.clone(), chunk).await;
            assert_eq!(blocks.len(), 2);
            let authority = |block: &Vec<(Vec<u8>, Vec<u8>)>| {
                block
                    .iter()
                    .find(|(n, _)| n == b":authority")
                    .unwrap()
                    .1
                    .clone()
            };
            assert_eq!(authority(&blocks[0]), b"localhost");
            assert_eq!(authority(&blocks[1]), b"localhost");
            assert_eq!(blocks[1][2].1.len(), 40_000, "a long header survives");
            let data_at = out.windows(data.len()).position(|w| w == data);
            assert!(data_at.is_some(), "DATA passes through byte for byte");
        }
    }

    #[tokio::test]
    async fn a_host_authority_is_kept_and_http1_passes_untouched() {
        let mut encoder = loona_hpack::Encoder::new();
        let block = encoder.encode([(&b":authority"[..], &b"localhost:50051"[..])]);
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(HEADERS, END_HEADERS, 1, &block));
        let (_, blocks) = mended(sent, 5).await;
        assert_eq!(blocks[0][0].1, b"localhost:50051");

        let http1 = b"POST /x HTTP/1.1\r\nHost: /tmp/s\r\n\r\n".to_vec();
        let mut wrapped = MendAuthority::new(std::io::Cursor::new(http1.clone()));
        let mut out = Vec::new();
        wrapped.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, http1);
    }

    #[tokio::test]
    async fn a_broken_block_closes_the_connection() {
        let mut sent = PREFACE.to_vec();
        sent.extend(frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff]));
        let mut wrapped = MendAuthority::new(std::io::Cursor::new(sent));
        let mut out = Vec::new();
        let error = wrapped.read_to_end(&mut out).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
