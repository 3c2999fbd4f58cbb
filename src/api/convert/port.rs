//! PortService requests, checked.

use std::net::IpAddr;
use std::time::Duration;

use super::fields::{positive_duration, sandbox_id};
use crate::error::{Error, Result};
use crate::pb;
use crate::sandbox::rules;

/// How long a preview token admits its holder when the request says not.
pub const DEFAULT_PREVIEW_TTL: Duration = Duration::from_secs(60 * 60);
/// The longest a preview token may admit its holder.
pub const MAX_PREVIEW_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Where a PortForward goes: the sandbox, the port, and the address in the
/// sandbox (empty for its loopback, then its own addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    pub sandbox_id: String,
    pub port: u16,
    pub address: String,
}

/// A PortForward's `start`, checked.
pub fn forward_start(start: pb::PortForwardStart) -> Result<ForwardTarget> {
    let pb::PortForwardStart {
        sandbox_id: id,
        port,
        address,
    } = start;
    let sandbox_id = sandbox_id("sandbox_id", id)?;
    let port = port_number(port)?;
    if !address.is_empty() && address.parse::<IpAddr>().is_err() {
        return Err(Error::invalid_argument(
            "address",
            format!(
                "{:?} is not an IP address; leave it empty for the sandbox's loopback",
                rules::shorten(&address)
            ),
        ));
    }
    Ok(ForwardTarget {
        sandbox_id,
        port,
        address,
    })
}

/// A sandbox id and port, checked.
pub fn sandbox_port(id: String, port: u32) -> Result<(String, u16)> {
    Ok((sandbox_id("sandbox_id", id)?, port_number(port)?))
}

/// A CreatePreviewUrl request: the sandbox, the port and the token's life.
pub fn preview_request(request: pb::CreatePreviewUrlRequest) -> Result<(String, u16, Duration)> {
    let pb::CreatePreviewUrlRequest {
        sandbox_id: id,
        port,
        ttl,
    } = request;
    let (id, port) = sandbox_port(id, port)?;
    let ttl = match ttl {
        None => DEFAULT_PREVIEW_TTL,
        Some(ttl) => positive_duration("ttl", ttl)?,
    };
    if ttl > MAX_PREVIEW_TTL {
        return Err(Error::invalid_argument(
            "ttl",
            format!(
                "must be at most {} (ask for a new URL when it runs out)",
                humantime::format_duration(MAX_PREVIEW_TTL)
            ),
        ));
    }
    Ok((id, port, ttl))
}

fn port_number(port: u32) -> Result<u16> {
    u16::try_from(port)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| Error::invalid_argument("port", format!("{port} is not 1 to 65535")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "sbx_0190f0e1a2b34c5d8e9f0a1b2c3d4e5f";

    #[test]
    fn ports_and_addresses_are_checked() {
        let start = |port, address: &str| pb::PortForwardStart {
            sandbox_id: ID.into(),
            port,
            address: address.into(),
        };
        assert_eq!(forward_start(start(3000, "")).unwrap().port, 3000);
        assert_eq!(forward_start(start(1, "::1")).unwrap().address, "::1");
        for (port, address, field) in [
            (0, "", "port"),
            (65536, "", "port"),
            (80, "example.com", "address"),
        ] {
            let error = forward_start(start(port, address)).unwrap_err();
            assert!(error.message().starts_with(field), "{}", error.message());
        }
        assert!(sandbox_port("sbx_1".into(), 80).is_err());
    }

    #[test]
    fn preview_lives_are_bounded() {
        let request = |seconds: Option<i64>| pb::CreatePreviewUrlRequest {
            sandbox_id: ID.into(),
            port: 80,
            ttl: seconds.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
        };
        assert_eq!(
            preview_request(request(None)).unwrap().2,
            DEFAULT_PREVIEW_TTL
        );
        assert_eq!(
            preview_request(request(Some(60))).unwrap().2,
            Duration::from_secs(60)
        );
        assert!(preview_request(request(Some(0))).is_err());
        assert!(preview_request(request(Some(8 * 24 * 3600))).is_err());
    }
}
