//! The preview proxy's addresses for a sandbox's port: by host name,
//! `<port>-<sandbox id, "_" written "-">.<domain>`, and by path,
//! `<domain>/preview/<sandbox id>/<port>/`. The proxy reads both back.

use crate::ids::{SANDBOX_PREFIX, is_sandbox_id};
use crate::pb;

/// The first segment of the path form.
pub const PATH_PREFIX: &str = "/preview/";

/// Where the preview proxy is reached from outside, to write its URLs;
/// empty (no URLs) when the server has no proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviewUrls {
    site: Option<Site>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Site {
    /// `http` or `https`.
    scheme: String,
    /// A host name, with `:port` when not the scheme's default.
    domain: String,
}

impl PreviewUrls {
    /// URLs under `domain` (such as `preview.example.com` or
    /// `localhost:8081`) with `scheme`.
    pub fn new(scheme: &str, domain: &str) -> Self {
        Self {
            site: Some(Site {
                scheme: scheme.to_owned(),
                domain: domain.trim_end_matches('/').to_ascii_lowercase(),
            }),
        }
    }

    /// Whether previews are reached over HTTPS (their cookies are then
    /// marked Secure).
    pub fn is_https(&self) -> bool {
        self.site
            .as_ref()
            .is_some_and(|site| site.scheme == "https")
    }

    /// Whether the server has a preview proxy.
    pub fn enabled(&self) -> bool {
        self.site.is_some()
    }

    /// The URL of `port` of sandbox `id` by host name; empty without a proxy.
    pub fn by_host(&self, id: &str, port: u16) -> String {
        self.site.as_ref().map_or_else(String::new, |site| {
            format!(
                "{}://{}.{}/",
                site.scheme,
                host_label(id, port),
                site.domain
            )
        })
    }

    /// The URL of `port` of sandbox `id` by path; empty without a proxy.
    pub fn by_path(&self, id: &str, port: u16) -> String {
        self.site.as_ref().map_or_else(String::new, |site| {
            format!("{}://{}{PATH_PREFIX}{id}/{port}/", site.scheme, site.domain)
        })
    }

    /// A sandbox's public ports for the API.
    pub fn exposed(&self, id: &str, ports: &[u16]) -> Vec<pb::ExposedPort> {
        ports
            .iter()
            .map(|&port| pb::ExposedPort {
                port: u32::from(port),
                url: self.by_host(id, port),
                path_url: self.by_path(id, port),
            })
            .collect()
    }
}

/// The first label of a preview host name: `3000-sbx-0190…`. DNS names
/// allow no `_`, so the id's is written `-`.
pub fn host_label(id: &str, port: u16) -> String {
    format!("{port}-{}", id.replacen('_', "-", 1))
}

/// The sandbox and port a preview host name (`Host` header) names, if its
/// first label is a preview label.
pub fn from_host(host: &str) -> Option<(String, u16)> {
    let label = host.split('.').next()?.to_ascii_lowercase();
    let (port, id) = label.split_once('-')?;
    let port = port_number(port)?;
    let prefix = SANDBOX_PREFIX.trim_end_matches('_');
    let id = match id.strip_prefix(prefix)?.strip_prefix(['-', '_']) {
        Some(hex) => format!("{SANDBOX_PREFIX}{hex}"),
        None => return None,
    };
    is_sandbox_id(&id).then_some((id, port))
}

/// The sandbox, port and the rest of the path (from its `/`) that a
/// path-form request names: `/preview/sbx_…/3000/rest` gives `/rest`.
pub fn from_path(path: &str) -> Option<(String, u16, &str)> {
    let rest = path.strip_prefix(PATH_PREFIX)?;
    let (id, rest) = rest.split_once('/')?;
    let (port, rest) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let port = port_number(port)?;
    is_sandbox_id(id).then(|| (id.to_owned(), port, rest))
}

fn port_number(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 5 {
        return None;
    }
    text.parse().ok().filter(|port| *port != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "sbx_0190f0e1a2b34c5d8e9f0a1b2c3d4e5f";

    #[test]
    fn host_urls_read_back() {
        let urls = PreviewUrls::new("https", "Preview.Example.com");
        let url = urls.by_host(ID, 3000);
        assert_eq!(
            url,
            "https://3000-sbx-0190f0e1a2b34c5d8e9f0a1b2c3d4e5f.preview.example.com/"
        );
        let host = url.trim_start_matches("https://").trim_end_matches('/');
        assert_eq!(from_host(host), Some((ID.to_owned(), 3000)));
        assert_eq!(
            from_host("3000-SBX_0190F0E1A2B34C5D8E9F0A1B2C3D4E5F.localhost:8081"),
            Some((ID.to_owned(), 3000)),
            "names are not case-sensitive, and the id's own `_` is read too"
        );
    }

    #[test]
    fn path_urls_read_back() {
        let urls = PreviewUrls::new("http", "localhost:8081");
        assert_eq!(
            urls.by_path(ID, 8080),
            format!("http://localhost:8081/preview/{ID}/8080/")
        );
        assert_eq!(
            from_path(&format!("/preview/{ID}/8080/static/app.js")),
            Some((ID.to_owned(), 8080, "/static/app.js"))
        );
        assert_eq!(
            from_path(&format!("/preview/{ID}/8080")),
            Some((ID.to_owned(), 8080, "/"))
        );
    }

    #[test]
    fn other_names_and_paths_are_not_previews() {
        for host in [
            "example.com",
            "0-sbx-0190f0e1a2b34c5d8e9f0a1b2c3d4e5f.x",
            "70000-sbx-0190f0e1a2b34c5d8e9f0a1b2c3d4e5f.x",
            "+80-sbx-0190f0e1a2b34c5d8e9f0a1b2c3d4e5f.x",
            "3000-sbx-0190.x",
            "3000-abc-0190f0e1a2b34c5d8e9f0a1b2c3d4e5f.x",
        ] {
            assert_eq!(from_host(host), None, "{host}");
        }
        for path in [
            "/",
            "/preview/",
            &format!("/preview/{ID}/"),
            &format!("/preview/{ID}/http/"),
            "/preview/sbx_1/80/",
        ] {
            assert_eq!(from_path(path), None, "{path}");
        }
    }

    #[test]
    fn no_proxy_no_urls() {
        let urls = PreviewUrls::default();
        assert!(!urls.enabled());
        assert_eq!(urls.exposed(ID, &[3000])[0].url, "");
    }
}
