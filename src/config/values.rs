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
}
