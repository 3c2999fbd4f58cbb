//! What a sandbox's network may reach: IPv4 ranges in CIDR notation, the
//! ranges an EGRESS sandbox never reaches unless the operator says otherwise,
//! and the hosts an ALLOW_LIST sandbox names.

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

    /// Whether every address of `other` is in this range.
    pub fn holds(&self, other: &Self) -> bool {
        self.prefix <= other.prefix && self.contains(other.address)
    }

    /// Whether the two ranges have an address in common.
    pub fn overlaps(&self, other: &Self) -> bool {
        let prefix = self.prefix.min(other.prefix);
        let mask = Self::mask(prefix);
        u32::from(self.address) & mask == u32::from(other.address) & mask
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

/// The most entries an ALLOW_LIST sandbox's `allowed_hosts` holds.
pub const MAX_ALLOWED_HOSTS: usize = 64;

/// One entry of an ALLOW_LIST sandbox's `allowed_hosts`: a domain name
/// (`example.com`), every name below a domain (`*.example.com`, not the
/// domain itself), or an IPv4 range (`203.0.113.0/24`, a bare address is a
/// /32).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllowedHost {
    /// Exactly this name, lowercase, without a final dot.
    Domain(String),
    /// Every name ending in `.` and this suffix, lowercase.
    Subdomains(String),
    /// Every address in the range.
    Range(Ipv4Cidr),
}

impl AllowedHost {
    /// Whether a DNS name (any case, with or without its final dot) is
    /// allowed by this entry.
    pub fn allows_name(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        match self {
            Self::Domain(domain) => name == *domain,
            Self::Subdomains(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            Self::Range(_) => false,
        }
    }

    /// Whether everything `other` allows, this entry allows too.
    pub fn covers(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Domain(own), Self::Domain(name)) => own == name,
            (Self::Subdomains(_), Self::Domain(name)) => self.allows_name(name),
            (Self::Subdomains(own), Self::Subdomains(suffix)) => {
                own == suffix || self.allows_name(suffix)
            }
            (Self::Range(own), Self::Range(range)) => own.holds(range),
            _ => false,
        }
    }

    /// Whether this entry names a range that overlaps `range`.
    pub fn overlaps(&self, range: &Ipv4Cidr) -> bool {
        matches!(self, Self::Range(own) if own.overlaps(range))
    }
}

impl FromStr for AllowedHost {
    type Err = String;

    /// Parses one entry; the message says what is wrong with it.
    fn from_str(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("an entry is empty".to_owned());
        }
        let looks_numeric = trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '/');
        if looks_numeric {
            return trimmed.parse().map(Self::Range);
        }
        if trimmed.contains(':') {
            return Err(format!(
                "{text:?} is not allowed: IPv6 is always blocked, and entries are domain names \
                 or IPv4 ranges without ports"
            ));
        }
        let lower = trimmed
            .strip_suffix('.')
            .unwrap_or(trimmed)
            .to_ascii_lowercase();
        let (wildcard, domain) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, lower),
        };
        check_domain(&domain).map_err(|why| format!("{text:?} is not a domain name: {why}"))?;
        Ok(if wildcard {
            Self::Subdomains(domain)
        } else {
            Self::Domain(domain)
        })
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(domain) => f.write_str(domain),
            Self::Subdomains(suffix) => write!(f, "*.{suffix}"),
            Self::Range(range) => range.fmt(f),
        }
    }
}

/// A lowercase DNS name: 1 to 253 characters of labels of 1 to 63 letters,
/// digits and '-' (not at either end of a label), separated by dots.
fn check_domain(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err("longer than 253 characters".to_owned());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label has 1 to 63 characters".to_owned());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(
                "only letters, digits, '-' and '_' (a '*' only as the whole first label)"
                    .to_owned(),
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label neither starts nor ends with '-'".to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_parse_into_names_wildcards_and_ranges() {
        let parse = |text: &str| text.parse::<AllowedHost>();
        assert_eq!(
            parse("PyPI.org.").unwrap(),
            AllowedHost::Domain("pypi.org".into())
        );
        assert_eq!(parse("*.example.com").unwrap().to_string(), "*.example.com");
        assert_eq!(parse("203.0.113.7").unwrap().to_string(), "203.0.113.7/32");
        for (text, says) in [
            ("", "empty"),
            ("exa mple.com", "not a domain name"),
            ("a.*.com", "not a domain name"),
            ("-bad.com", "neither starts nor ends"),
            ("example.com:443", "without ports"),
            ("fd00::1", "IPv6"),
            ("10.0.0.1/8", "did you mean"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }

    #[test]
    fn names_match_exactly_or_below_a_wildcard() {
        let exact: AllowedHost = "pypi.org".parse().unwrap();
        assert!(exact.allows_name("PYPI.org."));
        assert!(!exact.allows_name("files.pypi.org"));
        assert!(!exact.allows_name("evilpypi.org"));
        let below: AllowedHost = "*.pythonhosted.org".parse().unwrap();
        assert!(below.allows_name("files.pythonhosted.org"));
        assert!(below.allows_name("a.b.pythonhosted.org."));
        assert!(!below.allows_name("pythonhosted.org"));
        assert!(!below.allows_name("evilpythonhosted.org"));
        let range: AllowedHost = "203.0.113.0/24".parse().unwrap();
        assert!(!range.allows_name("203.0.113.7"));
    }

    #[test]
    fn an_entry_covers_what_it_allows_and_no_more() {
        let host = |text: &str| text.parse::<AllowedHost>().unwrap();
        for (policy, asked) in [
            ("pypi.org", "pypi.org"),
            ("*.pythonhosted.org", "files.pythonhosted.org"),
            ("*.pythonhosted.org", "*.files.pythonhosted.org"),
            ("*.pythonhosted.org", "*.pythonhosted.org"),
            ("203.0.113.0/24", "203.0.113.128/25"),
            ("203.0.113.0/24", "203.0.113.7"),
        ] {
            assert!(host(policy).covers(&host(asked)), "{policy} covers {asked}");
        }
        for (policy, asked) in [
            ("pypi.org", "files.pypi.org"),
            ("pypi.org", "*.pypi.org"),
            ("*.pythonhosted.org", "pythonhosted.org"),
            ("files.pythonhosted.org", "*.pythonhosted.org"),
            ("203.0.113.128/25", "203.0.113.0/24"),
            ("203.0.113.0/24", "pypi.org"),
            ("pypi.org", "203.0.113.7"),
        ] {
            assert!(
                !host(policy).covers(&host(asked)),
                "{policy} covers {asked}"
            );
        }
    }

    #[test]
    fn ranges_overlap_when_one_holds_an_address_of_the_other() {
        let range = |text: &str| text.parse::<Ipv4Cidr>().unwrap();
        assert!(range("10.0.0.0/8").overlaps(&range("10.1.2.3/32")));
        assert!(range("10.1.2.3/32").overlaps(&range("10.0.0.0/8")));
        assert!(range("0.0.0.0/0").overlaps(&range("169.254.0.0/16")));
        assert!(!range("11.0.0.0/8").overlaps(&range("10.0.0.0/8")));
    }

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
