//! Authentication: a tower layer in front of every service. With API keys
//! on, each call but health (and, when configured, reflection) must carry
//! `authorization: Bearer pdk_…` naming a key that exists and is not revoked;
//! otherwise the call ends `UNAUTHENTICATED` before any service sees it. The
//! caller's tenant then travels in the request's extensions ([`Caller`]) and
//! scopes everything the call touches. Each key may start a limited number
//! of calls per second; over it, calls end `RESOURCE_EXHAUSTED`.
//!
//! A valid key is remembered for [`KEY_CACHE_TTL`], so that a busy key costs
//! one store lookup a second rather than one per call (which halved
//! `GetSandbox`'s rate); a revoked key is therefore refused within that
//! time on every server. Calls already open when their key is revoked end
//! too (revocation.rs).

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic::Status;
use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::warn;

use super::revocation::{OpenCalls, Revocable};
use crate::keys;
use crate::sandbox::DEFAULT_TENANT;
use crate::store::Store;

/// How callers are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every caller acts as the default tenant.
    None,
    /// Every call but health carries an API key naming its tenant.
    Keys,
}

/// Who is calling: the tenant the call acts for, and the key that proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: String,
    /// `None` when the server runs without authentication.
    pub key_id: Option<String>,
}

/// The tenant a call acts for: its key's, or the default tenant on a server
/// without authentication.
pub fn tenant_of<T>(request: &tonic::Request<T>) -> String {
    request
        .extensions()
        .get::<Caller>()
        .map_or_else(|| DEFAULT_TENANT.to_owned(), |caller| caller.tenant.clone())
}

/// Who makes a call: its key's tenant and key, or the default tenant on a
/// server without authentication.
pub fn caller_of<T>(request: &tonic::Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(|| Caller {
            tenant: DEFAULT_TENANT.to_owned(),
            key_id: None,
        })
}

/// How long a key found valid is trusted without asking the store again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// The most keys remembered at once; past it the memory is cleared.
const KEY_CACHE_CAPACITY: usize = 10_000;

/// Valid keys by their hash, with when the store said so.
type KeyCache = Mutex<HashMap<String, (Caller, Instant)>>;

/// Paths every caller may use without a key.
const HEALTH: &str = "/grpc.health.v1.Health/";
const REFLECTION: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Requires API keys (see the module docs), or lets every call through as
/// the default tenant when the server runs without authentication.
#[derive(Clone)]
pub struct AuthLayer {
    store: Arc<dyn Store>,
    mode: AuthMode,
    open_reflection: bool,
    rate: Option<(NonZeroU32, Arc<DefaultKeyedRateLimiter<String>>)>,
    known: Arc<KeyCache>,
    /// The calls open with each key; `None` without keys.
    open: Option<OpenCalls>,
}

impl AuthLayer {
    /// Checks keys against `store` when `mode` asks for keys; reflection
    /// answers without a key when `open_reflection` is set. Each key may
    /// start `calls_per_second` calls a second (`None`: no limit), all of
    /// them at once after a quiet second.
    pub fn new(
        store: Arc<dyn Store>,
        mode: AuthMode,
        open_reflection: bool,
        calls_per_second: Option<NonZeroU32>,
    ) -> Self {
        let known: Arc<KeyCache> = Arc::default();
        let open = (mode == AuthMode::Keys).then(|| {
            let known = Arc::downgrade(&known);
            OpenCalls::start(store.clone(), move |hash| {
                // New calls with the key are refused from now on, not only
                // once its cache entry expires.
                if let Some(known) = known.upgrade() {
                    known.lock().unwrap_or_else(|e| e.into_inner()).remove(hash);
                }
            })
        });
        Self {
            store,
            mode,
            open_reflection,
            rate: calls_per_second
                .map(|rate| (rate, Arc::new(RateLimiter::keyed(Quota::per_second(rate))))),
            known,
            open,
        }
    }

    /// Whether callers must carry API keys.
    pub(super) fn requires_keys(&self) -> bool {
        self.mode == AuthMode::Keys
    }

    fn exempt(&self, path: &str) -> bool {
        self.mode == AuthMode::None
            || path.starts_with(HEALTH)
            || (self.open_reflection && REFLECTION.iter().any(|p| path.starts_with(p)))
    }

    /// The caller behind `headers` and the hash of its key, or why the call
    /// is refused.
    pub(super) async fn authenticate(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<(Caller, String), Status> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Status::unauthenticated(
                "this server needs an API key: send the header `authorization: Bearer pdk_…` \
                 (an operator makes keys with `paddock keys create --tenant NAME`)",
            ));
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .filter(|key| keys::well_formed(key))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "the authorization header must be `Bearer ` followed by an API key \
                     (pdk_ and 64 hex digits)",
                )
            })?;
        let hash = keys::sha256(key);
        if let Some(caller) = self.remembered(&hash) {
            self.admit(caller.key_id.as_deref().unwrap_or_default())?;
            return Ok((caller, hash));
        }
        let found = self.store.api_key_by_hash(&hash).await.map_err(|error| {
            warn!(%error, "cannot look up an API key");
            Status::unavailable("cannot check the API key now; try again")
        })?;
        match found {
            None => Err(Status::unauthenticated("the API key is not valid")),
            Some(key) if key.revoked_at.is_some() => {
                Err(Status::unauthenticated("the API key was revoked"))
            }
            Some(key) => {
                self.admit(&key.id)?;
                let caller = Caller {
                    tenant: key.tenant,
                    key_id: Some(key.id),
                };
                self.remember(hash.clone(), caller.clone());
                Ok((caller, hash))
            }
        }
    }

    /// The caller of a key found valid less than [`KEY_CACHE_TTL`] ago.
    fn remembered(&self, hash: &str) -> Option<Caller> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known
            .get(hash)
            .filter(|(_, checked)| checked.elapsed() < KEY_CACHE_TTL)
            .map(|(caller, _)| caller.clone())
    }

    fn remember(&self, hash: String, caller: Caller) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= KEY_CACHE_CAPACITY {
            known.clear();
        }
        known.insert(hash, (caller, Instant::now()));
    }

    /// Counts a call against the key's rate limit.
    fn admit(&self, key_id: &str) -> Result<(), Status> {
        let Some((rate, limiter)) = &self.rate else {
            return Ok(());
        };
        limiter.check_key(&key_id.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Status::resource_exhausted(format!(
                "API key {key_id} is over its rate limit of {rate} calls per second; \
                 retry in {} ms",
                wait.as_millis().max(1)
            ))
        })
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            auth: self.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the server's routes.
#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    auth: AuthLayer,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Authenticate<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<Revocable<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        // The service polled ready is the one that must take the call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let auth = self.auth.clone();
        Box::pin(async move {
            let mut guard = None;
            if !auth.exempt(request.uri().path()) {
                match auth.authenticate(request.headers()).await {
                    Ok((caller, hash)) => {
                        guard = auth
                            .open
                            .as_ref()
                            .zip(caller.key_id.as_deref())
                            .map(|(open, key_id)| open.track(&hash, key_id));
                        request.extensions_mut().insert(caller);
                    }
                    Err(status) => return Ok(status.into_http()),
                }
            }
            let response = inner.call(request).await?;
            Ok(response.map(|body| Revocable::new(body, guard)))
        })
    }
}
