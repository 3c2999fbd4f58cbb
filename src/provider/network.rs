//! What a sandbox's network may reach: IPv4 ranges in CIDR notation and the
//! ranges an EGRESS sandbox never reaches unless the operator says otherwise.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The ranges NETWORK_MODE_EGRESS blocks by default: every IPv4 range that is
/// not the public internet (RFC 6890's special-purpose registry), so that
/// private networks, cloud metadata (169.254.169.254) and the host's own
/// addresses stay out of reach.
pub const DEFAULT_EGRESS_BLOCKED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// An IPv4 range: an address and a prefix length, the address's host bits
/// zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    address: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// Whether `address` is in the range.
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        let mask = Self::mask(self.prefix);
        u32::from(address) & mask == u32::from(self.address)
    }

    fn mask(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
    }

    /// The default blocked ranges, parsed.
    pub fn default_egress_blocked() -> Vec<Self> {
        DEFAULT_EGRESS_BLOCKED
            .iter()
            .map(|text| text.parse().expect("the default ranges are valid"))
            .collect()
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    /// Parses `A.B.C.D/N`; a bare address is a /32. The message says what is
    /// wrong, for the operator who wrote it.
    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = text.split_once('/').unwrap_or((text, "32"));
        let address: Ipv4Addr = address.trim().parse().map_err(|_| {
            format!("{text:?} is not an IPv4 range such as 10.0.0.0/8 (IPv6 is always blocked)")
        })?;
        let prefix: u8 = prefix
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{text:?} has a prefix length that is not 0 to 32"))?;
        if u32::from(address) & !Self::mask(prefix) != 0 {
            return Err(format!(
                "{text:?} has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(u32::from(address) & Self::mask(prefix))
            ));
        }
        Ok(Self { address, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_print_and_contain() {
        let range: Ipv4Cidr = "169.254.0.0/16".parse().unwrap();
        assert_eq!(range.to_string(), "169.254.0.0/16");
        assert!(range.contains(Ipv4Addr::new(169, 254, 169, 254)));
        assert!(!range.contains(Ipv4Addr::new(169, 255, 0, 1)));
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
        assert_eq!(
            "1.2.3.4".parse::<Ipv4Cidr>().unwrap().to_string(),
            "1.2.3.4/32"
        );
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        for (text, says) in [
            ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("10.0.0.0/33", "prefix length"),
            ("fd00::/8", "IPv6 is always blocked"),
            ("example.com", "not an IPv4 range"),
        ] {
            let error = text.parse::<Ipv4Cidr>().unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn the_defaults_cover_metadata_private_ranges_and_loopback_but_not_the_internet() {
        let blocked = Ipv4Cidr::default_egress_blocked();
        let is_blocked = |a: [u8; 4]| blocked.iter().any(|r| r.contains(Ipv4Addr::from(a)));
        for address in [
            [169, 254, 169, 254],
            [10, 1, 2, 3],
            [172, 17, 0, 1],
            [192, 168, 1, 1],
            [127, 0, 0, 1],
            [100, 100, 100, 200],
        ] {
            assert!(is_blocked(address), "{address:?}");
        }
        for address in [[1, 1, 1, 1], [8, 8, 8, 8], [151, 101, 1, 1]] {
            assert!(!is_blocked(address), "{address:?}");
        }
    }
}
