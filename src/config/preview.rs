//! The preview proxy's settings: where it listens and the name browsers
//! reach it by.

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// The preview proxy's settings as given.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
pub struct PreviewArgs {
    /// Serve the preview proxy on this HOST:PORT: plain HTTP/1.1 (with
    /// WebSocket upgrades) to the TCP servers inside sandboxes, at
    /// http://<port>-<sandbox id>.<preview domain>/ and
    /// http://<preview domain>/preview/<sandbox id>/<port>/. Callers need
    /// an API key or a preview token unless a port is public (see
    /// PortService) [default: off].
    #[arg(long, env = "PADDOCK_PREVIEW_LISTEN", value_name = "ADDR")]
    pub preview_listen: Option<String>,

    /// The name browsers reach the preview proxy by, whose subdomains
    /// (*.DOMAIN) all lead to it, with :PORT when not 80/443, and an
    /// https:// prefix when TLS is terminated in front of it; preview URLs
    /// are written with it [default: localhost:PORT of --preview-listen,
    /// whose subdomains browsers and curl resolve to this machine].
    #[arg(long, env = "PADDOCK_PREVIEW_DOMAIN", value_name = "DOMAIN")]
    pub preview_domain: Option<String>,
}

/// The preview proxy's settings, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreviewConfig {
    /// Where the proxy listens (HOST:PORT); `None`: no proxy here.
    pub listen: Option<String>,
    /// `http` or `https`.
    pub scheme: String,
    /// The domain with its port, when given; `None`: `localhost` and the
    /// listener's port.
    pub domain: Option<String>,
}

/// Checks `args`.
pub fn resolve(args: PreviewArgs) -> anyhow::Result<PreviewConfig> {
    let PreviewArgs {
        preview_listen,
        preview_domain,
    } = args;
    let (scheme, domain) = match preview_domain.as_deref().map(str::trim) {
        None => ("http", None),
        Some(given) => {
            let (scheme, rest) = match given.split_once("://") {
                Some(("http", rest)) => ("http", rest),
                Some(("https", rest)) => ("https", rest),
                Some((other, _)) => bail!(
                    "preview_domain: {other:?} is not a scheme the preview URLs can have; \
                     use http:// or https://"
                ),
                None => ("http", given),
            };
            let domain = rest.trim_end_matches('/').to_ascii_lowercase();
            let (host, port) = domain.rsplit_once(':').unwrap_or((&domain, ""));
            let host_ok = !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !host_ok || (!port.is_empty() && port.parse::<u16>().is_err()) {
                bail!(
                    "preview_domain: {given:?} is not a domain name with an optional :PORT \
                     (such as preview.example.com or https://preview.example.com)"
                );
            }
            (scheme, Some(domain))
        }
    };
    Ok(PreviewConfig {
        listen: preview_listen,
        scheme: scheme.to_owned(),
        domain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(given: &str) -> anyhow::Result<PreviewConfig> {
        resolve(PreviewArgs {
            preview_listen: None,
            preview_domain: Some(given.to_owned()),
        })
    }

    #[test]
    fn domains_take_a_scheme_and_a_port() {
        let config = domain("https://Preview.Example.com/").unwrap();
        assert_eq!(config.scheme, "https");
        assert_eq!(config.domain.as_deref(), Some("preview.example.com"));
        assert_eq!(
            domain("localhost:8081").unwrap().domain.as_deref(),
            Some("localhost:8081")
        );
        for bad in ["ftp://x", "a/b", "x:99999", "*.example.com", ""] {
            assert!(domain(bad).is_err(), "{bad}");
        }
    }
}
