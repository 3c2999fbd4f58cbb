//! What the port service and the proxy share: where previews are reached,
//! the key that signs their tokens, and where a token travels.

use super::token::PreviewTokens;
use super::urls::PreviewUrls;

/// The query parameter that carries a preview token in a preview URL.
pub const TOKEN_QUERY: &str = "paddock_token";
/// The cookie the proxy keeps a preview token in after its first use.
pub const TOKEN_COOKIE: &str = "paddock_preview_token";
/// The header that may carry a preview token instead.
pub const TOKEN_HEADER: &str = "x-paddock-preview-token";

/// Where previews are reached and the key that signs their tokens.
#[derive(Debug, Clone)]
pub struct PreviewSite {
    pub urls: PreviewUrls,
    pub tokens: PreviewTokens,
}
