//! Who may reach a sandbox's port through the preview proxy, and the
//! request the sandbox's server then sees: which sandbox and port a
//! request names, its credentials checked and taken out of it.

use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::answer::{Body, error_answer, plain};
use super::site::{PreviewSite, TOKEN_COOKIE, TOKEN_HEADER, TOKEN_QUERY};
use super::urls::{self, PATH_PREFIX};
use crate::api::auth::AuthLayer;
use crate::clock;
use crate::sandbox::{DEFAULT_TENANT, Manager};

/// What the proxy does with an admitted request.
pub(super) enum Admitted {
    /// Answer at once (a preview URL's token becomes a cookie).
    Redirect(http::Response<Body>),
    /// Pass it to the sandbox's server.
    Visitor(Visit),
}

/// An admitted request's destination.
pub(super) struct Visit {
    /// The tenant it acts for.
    pub tenant: String,
    pub sandbox_id: String,
    pub port: u16,
    /// The path and query the sandbox's server sees: the path form's prefix
    /// and the token taken out.
    pub path_and_query: String,
}

const NOT_A_PREVIEW: &str = "Paddock's preview proxy serves sandbox ports at \
     <port>-<sandbox id>.<preview domain> or at /preview/<sandbox id>/<port>/";

const NOT_PUBLIC: &str = "this port of the sandbox is not public: send an API key in \
     `authorization: Bearer pdk_…`, or open a preview URL from CreatePreviewUrl";

/// Admits `request` (by `auth`'s keys, `site`'s tokens, or the public
/// ports of `manager`'s sandboxes) or answers why not.
pub(super) async fn admit(
    site: &PreviewSite,
    manager: &Manager,
    auth: &AuthLayer,
    request: &http::Request<hyper::body::Incoming>,
) -> Result<Admitted, http::Response<Body>> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or_default();
    let path = request.uri().path();
    let (sandbox_id, port, path_form) = if let Some((id, port)) = urls::from_host(host) {
        (id, port, None)
    } else if let Some((id, port, rest)) = urls::from_path(path) {
        (id, port, Some(rest))
    } else {
        return Err(plain(StatusCode::NOT_FOUND, NOT_A_PREVIEW));
    };
    let query = request.uri().query().unwrap_or_default();
    let (query_token, query) = take_query_token(query);
    let token = query_token
        .clone()
        .or_else(|| header_text(request.headers(), TOKEN_HEADER))
        .or_else(|| cookie_token(request.headers()));
    let tenant = if let Some(token) = token {
        let grant = site
            .tokens
            .check(&token, clock::now())
            .map_err(|refusal| plain(StatusCode::UNAUTHORIZED, refusal.to_string()))?;
        if grant.sandbox_id != sandbox_id || grant.port != port {
            return Err(plain(
                StatusCode::FORBIDDEN,
                "the preview token is for another sandbox or port",
            ));
        }
        grant.tenant
    } else if !auth.requires_keys() {
        DEFAULT_TENANT.to_owned()
    } else if request.headers().contains_key(header::AUTHORIZATION) {
        let (caller, _) = auth
            .authenticate(request.headers())
            .await
            .map_err(|status| plain(StatusCode::UNAUTHORIZED, status.message()))?;
        caller.tenant
    } else {
        match manager.sandbox_of_any_tenant(&sandbox_id).await {
            Ok(Some(sandbox)) if sandbox.public_ports.contains(&port) => sandbox.tenant,
            Ok(_) => return Err(plain(StatusCode::UNAUTHORIZED, NOT_PUBLIC)),
            Err(error) => return Err(error_answer(&error)),
        }
    };
    let path_and_query = with_query(path_form.unwrap_or(path), &query);
    if let Some(token) = query_token
        && matches!(*request.method(), http::Method::GET | http::Method::HEAD)
    {
        // The token leaves the address bar and becomes a cookie of this
        // sandbox's port only.
        let cookie_path = if path_form.is_some() {
            format!("{PATH_PREFIX}{sandbox_id}/{port}/")
        } else {
            "/".to_owned()
        };
        let location = with_query(path, &query);
        return Ok(Admitted::Redirect(redirect(
            site,
            &location,
            &token,
            &cookie_path,
        )));
    }
    Ok(Admitted::Visitor(Visit {
        tenant,
        sandbox_id,
        port,
        path_and_query,
    }))
}

/// Sends the browser back to `location` with `token` in a cookie of
/// `cookie_path`.
fn redirect(
    site: &PreviewSite,
    location: &str,
    token: &str,
    cookie_path: &str,
) -> http::Response<Body> {
    let remaining = site
        .tokens
        .check(token, clock::now())
        .ok()
        .and_then(|grant| grant.expires_at.duration_since(clock::now()).ok())
        .unwrap_or_default();
    let secure = if site.urls.is_https() { "; Secure" } else { "" };
    let cookie = format!(
        "{TOKEN_COOKIE}={token}; Path={cookie_path}; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        remaining.as_secs()
    );
    let mut response = plain(StatusCode::SEE_OTHER, "signed in to the preview");
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Takes the preview proxy's credentials out of headers bound for the
/// sandbox's server: its token header and cookie, and an API key.
pub(super) fn strip_credentials(headers: &mut HeaderMap) {
    headers.remove(TOKEN_HEADER);
    let is_key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("bearer pdk_")
        });
    if is_key {
        headers.remove(header::AUTHORIZATION);
    }
    let cookies: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.starts_with(&format!("{TOKEN_COOKIE}=")))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !cookies.is_empty()
        && let Ok(value) = HeaderValue::from_str(&cookies.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

/// The token in a query string, and the query without it.
fn take_query_token(query: &str) -> (Option<String>, String) {
    let mut token = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            match pair
                .strip_prefix(TOKEN_QUERY)
                .and_then(|v| v.strip_prefix('='))
            {
                Some(value) => {
                    token = Some(value.to_owned());
                    false
                }
                None => !pair.is_empty(),
            }
        })
        .collect();
    (token, rest.join("&"))
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(TOKEN_COOKIE)
                .and_then(|v| v.strip_prefix('='))
                .map(str::to_owned)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_leaves_the_query() {
        assert_eq!(
            take_query_token("a=1&paddock_token=abc.def&b=2"),
            (Some("abc.def".to_owned()), "a=1&b=2".to_owned())
        );
        assert_eq!(take_query_token(""), (None, String::new()));
        assert_eq!(
            take_query_token("paddock_tokens=1"),
            (None, "paddock_tokens=1".to_owned())
        );
    }

    #[test]
    fn credentials_never_reach_the_sandbox() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer pdk_1"),
        );
        headers.insert(TOKEN_HEADER, HeaderValue::from_static("t"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; paddock_preview_token=t; session=1"),
        );
        strip_credentials(&mut headers);
        assert!(!headers.contains_key(header::AUTHORIZATION));
        assert!(!headers.contains_key(TOKEN_HEADER));
        assert_eq!(headers[header::COOKIE], "theme=dark; session=1");

        let mut own = HeaderMap::new();
        own.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YTpi"),
        );
        strip_credentials(&mut own);
        assert_eq!(
            own[header::AUTHORIZATION],
            "Basic YTpi",
            "the app's own credentials pass"
        );
    }
}
