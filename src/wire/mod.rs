//! How Paddock's gRPC travels, for every endpoint alike: the server's
//! listener, the in-sandbox agent and the server's channels to agents.
//!
//! A leaf: it depends on nothing else in the crate, so every layer can use
//! it.

pub mod authority;
pub mod codec;
pub mod forward;

/// The HTTP/2 receive window of one stream: how much a peer may send on a
/// stream before it must wait for a window update.
pub const RECEIVE_STREAM_WINDOW: u32 = 4 << 20;
/// The HTTP/2 receive window of one connection (see
/// [`RECEIVE_STREAM_WINDOW`]).
pub const RECEIVE_CONNECTION_WINDOW: u32 = 16 << 20;
/// The largest HTTP/2 frame a peer may send: a 1 MiB upload chunk in a few
/// frames rather than 64 of HTTP/2's default 16 KiB.
pub const RECEIVE_MAX_FRAME: u32 = 256 << 10;
