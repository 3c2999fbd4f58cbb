//! Revocation reaches calls already open: a key's watch, exec and download
//! streams end `UNAUTHENTICATED` within [`REVOCATION_CHECK_INTERVAL`] (and
//! the time of one store lookup) after the key is revoked, on every replica,
//! because each replica checks the keys of its own open calls.
//!
//! [`OpenCalls::track`] counts a call against its key while the call's
//! response is being sent; a task asks the store about every key with
//! calls open, and when one is revoked (or gone) it wakes each of its calls,
//! whose [`Revocable`] response body then ends with the status instead of
//! the rest of the stream.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::sync::watch;
use tonic::Status;
use tonic::codegen::http;
use tracing::{info, warn};

use crate::store::Store;

/// How often the keys of open calls are checked.
pub const REVOCATION_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// One key's open calls.
struct Watched {
    calls: usize,
    key_id: String,
    revoked: watch::Sender<bool>,
}

/// The open calls of each key, by the key's hash.
type Calls = Mutex<HashMap<String, Watched>>;

/// The keys with calls open on this server, checked against the store.
#[derive(Clone)]
pub struct OpenCalls {
    calls: Arc<Calls>,
}

impl OpenCalls {
    /// Starts checking, against `store`, the keys of the calls it tracks;
    /// `on_revoked` is told the hash of each key found revoked.
    pub fn start(store: Arc<dyn Store>, on_revoked: impl Fn(&str) + Send + 'static) -> Self {
        let calls = Arc::new(Calls::default());
        tokio::spawn(check_keys(store, Arc::downgrade(&calls), on_revoked));
        Self { calls }
    }

    /// Counts a call of the key whose hash is `hash` until the guard drops.
    pub fn track(&self, hash: &str, key_id: &str) -> CallGuard {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let watched = calls.entry(hash.to_owned()).or_insert_with(|| Watched {
            calls: 0,
            key_id: key_id.to_owned(),
            revoked: watch::channel(false).0,
        });
        watched.calls += 1;
        CallGuard {
            calls: Arc::downgrade(&self.calls),
            hash: hash.to_owned(),
            revoked: watched.revoked.subscribe(),
        }
    }
}

/// A call counted against its key; uncounted when dropped.
pub struct CallGuard {
    calls: Weak<Calls>,
    hash: String,
    revoked: watch::Receiver<bool>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let Some(calls) = self.calls.upgrade() else {
            return;
        };
        let mut calls = calls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(watched) = calls.get_mut(&self.hash) {
            watched.calls -= 1;
            if watched.calls == 0 {
                calls.remove(&self.hash);
            }
        }
    }
}

/// Asks the store, every [`REVOCATION_CHECK_INTERVAL`], about each key with
/// calls open, until the calls' registry is gone.
async fn check_keys(store: Arc<dyn Store>, calls: Weak<Calls>, on_revoked: impl Fn(&str)) {
    loop {
        tokio::time::sleep(REVOCATION_CHECK_INTERVAL).await;
        let Some(open) = calls.upgrade() else {
            return;
        };
        let hashes: Vec<String> = {
            let calls = open.lock().unwrap_or_else(|e| e.into_inner());
            calls
                .iter()
                .filter(|(_, watched)| !*watched.revoked.borrow())
                .map(|(hash, _)| hash.clone())
                .collect()
        };
        drop(open);
        for hash in hashes {
            let revoked = match store.api_key_by_hash(&hash).await {
                Ok(Some(key)) => key.revoked_at.is_some(),
                Ok(None) => true,
                Err(error) => {
                    // Open calls go on while the store cannot answer; new
                    // calls are refused meanwhile.
                    warn!(%error, "cannot check the keys of open calls");
                    break;
                }
            };
            if revoked {
                on_revoked(&hash);
                if let Some(open) = calls.upgrade() {
                    let calls = open.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(watched) = calls.get(&hash) {
                        info!(key_id = %watched.key_id, calls = watched.calls, "key revoked: ending its open calls");
                        watched.revoked.send_replace(true);
                    }
                }
            }
        }
    }
}

/// The status a call ends with when its key is revoked while it is open:
/// the same a new call with the key gets.
fn revoked_status() -> Status {
    Status::unauthenticated("the API key was revoked")
}

/// A response body that ends with [`revoked_status`] as soon as its call's
/// key is revoked; otherwise it is the inner body, frame for frame.
pub struct Revocable<B> {
    inner: B,
    /// Ready when the key is revoked; `None` for a call not made with a key.
    revoked: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    ended: bool,
}

impl<B> Revocable<B> {
    /// `inner`, ended when `guard`'s key is revoked (never without a guard).
    pub fn new(inner: B, guard: Option<CallGuard>) -> Self {
        let revoked = guard.map(|guard| {
            Box::pin(async move {
                let mut revoked = guard.revoked.clone();
                let _ = revoked.wait_for(|revoked| *revoked).await;
                // Keep the call counted until its body ends.
                drop(guard);
            }) as Pin<Box<dyn Future<Output = ()> + Send>>
        });
        Self {
            inner,
            revoked,
            ended: false,
        }
    }
}

impl<B: Default> Default for Revocable<B> {
    fn default() -> Self {
        Self::new(B::default(), None)
    }
}

impl<B> Body for Revocable<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if let Some(revoked) = self.revoked.as_mut()
            && revoked.as_mut().poll(cx).is_ready()
        {
            self.ended = true;
            let mut trailers = http::HeaderMap::new();
            // Only fails for a message that cannot be a header value.
            let _ = revoked_status().add_header(&mut trailers);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
