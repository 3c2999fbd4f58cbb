//! The values settings take: listen addresses, byte sizes and durations,
//! parsed with the setting named in every error.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP `host:port`, resolved when binding.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(host_port) => f.write_str(host_port),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl ListenAddr {
    /// Parses `host:port` or `unix:PATH`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if let Some(path) = text.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                bail!("listen address {text:?} names no socket path");
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        match text.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Tcp(text.to_owned()))
            }
            _ => bail!("listen address {text:?} is neither HOST:PORT nor unix:PATH"),
        }
    }

    /// Whether only this machine can reach the address: a Unix socket, or a
    /// loopback host (`localhost`, 127.0.0.0/8, `[::1]`). The server checks
    /// the addresses it actually binds again.
    pub fn is_local(&self) -> bool {
        match self {
            Self::Unix(_) => true,
            Self::Tcp(text) => {
                let host = text
                    .rsplit_once(':')
                    .map_or(text.as_str(), |(host, _)| host);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                host.eq_ignore_ascii_case("localhost")
                    || host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

/// The output budget of each command: a size of at least 8 MiB, so that a
/// reader following live output never loses any.
pub(super) fn bytes(name: &str, text: Option<String>, default: u64) -> anyhow::Result<u64> {
    let Some(text) = text else {
        return Ok(default);
    };
    let value = size(name, &text)?;
    if value < 8 << 20 {
        bail!("{name} {text:?} is below the least, 8MiB");
    }
    Ok(value)
}

/// Parses a byte size such as 65536, 512KiB, 64MiB or 1GiB.
pub(super) fn size(name: &str, text: &str) -> anyhow::Result<u64> {
    let trimmed = text.trim();
    let (number, unit) = match trimmed.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => trimmed.split_at(at),
        None => (trimmed, ""),
    };
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => bail!("{name} {text:?} is not a size such as 64MiB or 1GiB"),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .with_context(|| format!("{name} {text:?} is not a size such as 64MiB or 1GiB"))
}

pub(super) fn duration(
    name: &str,
    text: Option<String>,
    default: Duration,
) -> anyhow::Result<Duration> {
    match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(&text)
            .with_context(|| format!("{name} {text:?} is not a duration such as 30s, 5m or 2h")),
    }
}

pub(super) fn optional_duration(
    name: &str,
    text: Option<String>,
    default: Option<Duration>,
) -> anyhow::Result<Option<Duration>> {
    match text.as_deref() {
        None => Ok(default),
        Some("none") => Ok(None),
        Some(_) => duration(name, text, Duration::ZERO).map(Some),
    }
}

/// How the server answers browsers, when it serves gRPC-Web.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcWeb {
    /// The origins allowed to call from another origin; empty: none.
    pub origins: CorsOrigins,
}

/// The web origins whose pages may call the server from elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// These origins, as `scheme://host[:port]`.
    List(Vec<String>),
    /// Any origin ("*").
    Any,
}

/// The gRPC-Web settings: `None` when it is off.
pub fn grpc_web(
    enabled: Option<bool>,
    origins: Option<Vec<String>>,
) -> anyhow::Result<Option<GrpcWeb>> {
    let origins = origins.unwrap_or_default();
    if !enabled.unwrap_or(false) {
        if !origins.is_empty() {
            bail!("grpc_web_origins is set but gRPC-Web is off: add --grpc-web");
        }
        return Ok(None);
    }
    let origins: Vec<String> = origins
        .iter()
        .map(|origin| origin.trim().trim_end_matches('/').to_owned())
        .filter(|origin| !origin.is_empty())
        .collect();
    if origins.iter().any(|origin| origin == "*") {
        if origins.len() > 1 {
            bail!("grpc_web_origins: \"*\" allows every origin; give it alone");
        }
        return Ok(Some(GrpcWeb {
            origins: CorsOrigins::Any,
        }));
    }
    for origin in &origins {
        // An origin is exactly scheme://authority: no path, query or user.
        let valid = origin.parse::<http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.authority().is_some_and(|authority| {
                    !authority.as_str().contains('@')
                        && *origin == format!("{}://{authority}", uri.scheme_str().unwrap_or(""))
                })
        });
        if !valid {
            bail!(
                "grpc_web_origins: {origin:?} is not a web origin; write scheme://host[:port], \
                 such as https://ide.example.com"
            );
        }
    }
    Ok(Some(GrpcWeb {
        origins: CorsOrigins::List(origins),
    }))
}

/// The reaper's lease time: at least a second, so that renewals (a third
/// of it) do not flood the database.
pub fn lease_ttl(text: Option<String>) -> anyhow::Result<Duration> {
    let ttl = duration("reaper_lease_ttl", text, Duration::from_secs(10))?;
    if ttl < Duration::from_secs(1) {
        bail!("reaper_lease_ttl: at least 1s, so that its renewals stay rare");
    }
    Ok(ttl)
}

/// The bootstrap API key and its tenant (by default the default tenant),
/// when a key is given.
pub fn bootstrap_key(key: Option<String>, tenant: Option<String>) -> Option<(String, String)> {
    key.map(|key| {
        let tenant = tenant.unwrap_or_else(|| crate::sandbox::DEFAULT_TENANT.to_owned());
        (key, tenant)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            ListenAddr::parse("127.0.0.1:50051").unwrap(),
            ListenAddr::Tcp("127.0.0.1:50051".into())
        );
        assert_eq!(
            ListenAddr::parse("[::1]:9").unwrap(),
            ListenAddr::Tcp("[::1]:9".into())
        );
        assert_eq!(
            ListenAddr::parse("unix:/tmp/p.sock").unwrap(),
            ListenAddr::Unix("/tmp/p.sock".into())
        );
        for bad in ["", "localhost", "host:port", ":80", "unix:"] {
            assert!(ListenAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grpc_web_origins_are_checked_and_need_grpc_web() {
        assert_eq!(grpc_web(None, None).unwrap(), None);
        let on = grpc_web(Some(true), Some(vec!["https://ide.example.com/".into()])).unwrap();
        assert_eq!(
            on.unwrap().origins,
            CorsOrigins::List(vec!["https://ide.example.com".into()])
        );
        let any = grpc_web(Some(true), Some(vec!["*".into()])).unwrap();
        assert_eq!(any.unwrap().origins, CorsOrigins::Any);
        for (enabled, origins, error) in [
            (None, vec!["https://a.example"], "gRPC-Web is off"),
            (Some(true), vec!["*", "https://a.example"], "give it alone"),
            (Some(true), vec!["ide.example.com"], "is not a web origin"),
            (
                Some(true),
                vec!["https://a.example/path"],
                "is not a web origin",
            ),
            (Some(true), vec!["ftp://a.example"], "is not a web origin"),
            (
                Some(true),
                vec!["https://user@a.example"],
                "is not a web origin",
            ),
        ] {
            let origins = origins.into_iter().map(String::from).collect();
            let refused = grpc_web(enabled, Some(origins)).unwrap_err().to_string();
            assert!(refused.contains(error), "{refused}");
        }
    }
}
