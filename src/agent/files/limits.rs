//! The sizes files move in, and the stream type transfers answer with.

use std::pin::Pin;

use futures::Stream;
use tonic::Status;

/// The bytes in one Download or DownloadArchive chunk.
pub const CHUNK_BYTES: usize = 256 << 10;

/// The largest upload chunk accepted.
pub const MAX_UPLOAD_CHUNK_BYTES: usize = 1 << 20;

/// The largest WriteFile content, and ReadFile answer.
pub const MAX_SMALL_FILE_BYTES: usize = 3 << 20;

/// The longest path accepted.
pub const MAX_PATH_BYTES: usize = 4096;

pub type Chunks<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;
