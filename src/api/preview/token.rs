//! Preview tokens: what CreatePreviewUrl hands out so that a browser
//! without an API key may reach one port of one sandbox until a time.
//!
//! A token is `base64url(claims) "." base64url(HMAC-SHA256(key, claims))`,
//! the claims being the tenant, the sandbox id, the port and the expiry in
//! Unix seconds, one per line. The key is a secret the store keeps for every
//! server that shares it, so any replica checks any replica's tokens. A
//! token cannot be revoked alone; it dies with its expiry or its sandbox.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The name of the store's secret that signs preview tokens.
pub const SECRET_NAME: &str = "preview-tokens";

/// The version tag of the claims' layout.
const CLAIMS_VERSION: &str = "v1";

/// What a preview token admits its holder to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The sandbox's owner.
    pub tenant: String,
    /// The sandbox.
    pub sandbox_id: String,
    /// The port.
    pub port: u16,
    /// When the token stops admitting.
    pub expires_at: SystemTime,
}

/// Why a token is refused, in a sentence for the visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a token, or not signed by this store's key.
    Invalid,
    /// Its time ran out.
    Expired,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Invalid => "the preview token is not valid",
            Self::Expired => "the preview token has expired; ask for a new preview URL",
        })
    }
}

/// Signs and checks preview tokens with one key.
#[derive(Clone)]
pub struct PreviewTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PreviewTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviewTokens").finish_non_exhaustive()
    }
}

impl PreviewTokens {
    /// Tokens signed with `secret`.
    pub fn new(secret: &str) -> Self {
        Self {
            key: secret.as_bytes().to_vec(),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length")
    }

    /// The token of `grant`.
    pub fn sign(&self, grant: &Grant) -> String {
        let expires = grant
            .expires_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = format!(
            "{CLAIMS_VERSION}\n{}\n{}\n{}\n{expires}",
            grant.tenant, grant.sandbox_id, grant.port
        );
        let mut mac = self.mac();
        mac.update(claims.as_bytes());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(claims),
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// What `token` admits to at `now`, or why it admits to nothing.
    pub fn check(&self, token: &str, now: SystemTime) -> Result<Grant, Refusal> {
        let (claims, signature) = token.trim().split_once('.').ok_or(Refusal::Invalid)?;
        let claims = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| Refusal::Invalid)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Refusal::Invalid)?;
        let mut mac = self.mac();
        mac.update(&claims);
        // Compared in constant time.
        mac.verify_slice(&signature).map_err(|_| Refusal::Invalid)?;
        let claims = String::from_utf8(claims).map_err(|_| Refusal::Invalid)?;
        let fields: Vec<&str> = claims.split('\n').collect();
        let [CLAIMS_VERSION, tenant, sandbox_id, port, expires] = fields[..] else {
            return Err(Refusal::Invalid);
        };
        let expires_at =
            UNIX_EPOCH + Duration::from_secs(expires.parse().map_err(|_| Refusal::Invalid)?);
        if expires_at <= now {
            return Err(Refusal::Expired);
        }
        Ok(Grant {
            tenant: tenant.to_owned(),
            sandbox_id: sandbox_id.to_owned(),
            port: port.parse().map_err(|_| Refusal::Invalid)?,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires_in: Duration) -> Grant {
        Grant {
            tenant: "acme".into(),
            sandbox_id: "sbx_0190f0e1a2b34c5d8e9f0a1b2c3d4e5f".into(),
            port: 3000,
            expires_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000) + expires_in,
        }
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_signed_grant_reads_back_until_it_expires() {
        let tokens = PreviewTokens::new("secret");
        let grant = grant(Duration::from_secs(60));
        let token = tokens.sign(&grant);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "a token needs no escaping in a URL: {token}"
        );
        assert_eq!(tokens.check(&token, at(1_800_000_059)), Ok(grant));
        assert_eq!(
            tokens.check(&token, at(1_800_000_060)),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn another_key_or_a_changed_claim_is_refused() {
        let token = PreviewTokens::new("secret").sign(&grant(Duration::from_secs(60)));
        let now = at(1_800_000_000);
        assert_eq!(
            PreviewTokens::new("other").check(&token, now),
            Err(Refusal::Invalid)
        );
        let (claims, signature) = token.split_once('.').unwrap();
        let forged = String::from_utf8(URL_SAFE_NO_PAD.decode(claims).unwrap())
            .unwrap()
            .replace("3000", "3001");
        let forged = format!("{}.{signature}", URL_SAFE_NO_PAD.encode(forged));
        let tokens = PreviewTokens::new("secret");
        assert_eq!(tokens.check(&forged, now), Err(Refusal::Invalid));
        for junk in ["", ".", "abc", "a.b", "pdk_123"] {
            assert_eq!(tokens.check(junk, now), Err(Refusal::Invalid), "{junk:?}");
        }
    }
}
