//! The preview proxy's wiring: its listener, the URLs it is reached at and
//! the key that signs its tokens.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use super::listen::bind_preview;
use crate::api::preview::{PreviewSite, PreviewTokens, PreviewUrls, SECRET_NAME};
use crate::config::PreviewConfig;
use crate::store::Store;

/// Binds the preview listener when `config` asks for one, and the site its
/// URLs and tokens describe (no URLs when neither a listener nor a domain is
/// configured: then no server of this store has said where previews are).
pub(super) async fn open(
    config: &PreviewConfig,
    store: &Arc<dyn Store>,
) -> anyhow::Result<(Option<TcpListener>, PreviewSite)> {
    let listener = match &config.listen {
        Some(host_port) => Some(bind_preview(host_port).await?),
        None => None,
    };
    let domain = match (&config.domain, &listener) {
        (Some(domain), _) => Some(domain.clone()),
        (None, Some(listener)) => Some(format!("localhost:{}", listener.local_addr()?.port())),
        (None, None) => None,
    };
    let urls = domain.map_or_else(PreviewUrls::default, |domain| {
        PreviewUrls::new(&config.scheme, &domain)
    });
    let secret = store
        .shared_secret(SECRET_NAME)
        .await
        .context("cannot read the key that signs preview tokens")?;
    Ok((
        listener,
        PreviewSite {
            urls,
            tokens: PreviewTokens::new(&secret),
        },
    ))
}
