//! The proxy's listener and its answer to each request: admitted, then
//! relayed to the sandbox's server.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::admit;
use super::answer::{Body, error_answer};
use super::site::PreviewSite;
use super::upstream;
use crate::api::auth::AuthLayer;
use crate::sandbox::Manager;

/// Everything the proxy needs to answer.
pub struct PreviewProxy {
    site: PreviewSite,
    manager: Manager,
    auth: AuthLayer,
}

impl PreviewProxy {
    /// A proxy to the sandboxes of `manager`, admitting callers by `auth`
    /// and the tokens of `site`.
    pub fn new(site: PreviewSite, manager: Manager, auth: AuthLayer) -> Self {
        Self {
            site,
            manager,
            auth,
        }
    }
}

/// Serves the proxy on `listener` until `stopped` completes.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<PreviewProxy>,
    stopped: impl Future<Output = ()>,
) {
    tokio::pin!(stopped);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopped => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, most likely: pause rather than spin.
                warn!(%error, "the preview listener cannot accept");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let reuse = upstream::Reuse::default();
            let service = service_fn(move |request| {
                let proxy = proxy.clone();
                let reuse = reuse.clone();
                async move { Ok::<_, Infallible>(proxy.answer(request, peer, &reuse).await) }
            });
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                debug!(%error, "a preview connection ended with an error");
            }
        });
    }
}

impl PreviewProxy {
    /// The answer to one request: the sandbox server's, or why not.
    async fn answer(
        &self,
        request: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
        reuse: &upstream::Reuse,
    ) -> http::Response<Body> {
        let admitted = match admit::admit(&self.site, &self.manager, &self.auth, &request).await {
            Ok(admitted) => admitted,
            Err(answer) => return answer,
        };
        match admitted {
            admit::Admitted::Redirect(answer) => answer,
            admit::Admitted::Visitor(visit) => {
                match upstream::relay(&self.manager, &self.site, request, visit, peer, reuse).await
                {
                    Ok(answer) => answer,
                    Err(error) => error_answer(&error),
                }
            }
        }
    }
}
