//! API keys: how they are made, what they look like, and how they are
//! recognised. A key is `pdk_` and 64 hex digits (256 random bits); the
//! store keeps its SHA-256 only, so a stolen database reveals no key. A fast
//! hash is enough for secrets this long: there is nothing to guess.

use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::store::ApiKey;

/// What every key starts with, so that leaked keys are easy to search for.
pub const PREFIX: &str = "pdk_";

/// A key just made: the record to store, and the key text to show once.
pub struct NewKey {
    pub record: ApiKey,
    pub secret: String,
}

/// Makes a key for `tenant`.
pub fn generate(tenant: &str, description: &str) -> Result<NewKey> {
    validate_tenant(tenant)?;
    let mut secret = [0u8; 32];
    let mut id = [0u8; 8];
    for buffer in [&mut secret[..], &mut id[..]] {
        getrandom::fill(buffer)
            .map_err(|e| Error::unavailable(format!("the system cannot give random bytes: {e}")))?;
    }
    let secret = format!("{PREFIX}{}", crate::ids::hex(&secret));
    Ok(NewKey {
        record: ApiKey {
            id: format!("key_{}", crate::ids::hex(&id)),
            tenant: tenant.to_owned(),
            secret_sha256: sha256(&secret),
            description: description.to_owned(),
            created_at: SystemTime::now(),
            revoked_at: None,
        },
        secret,
    })
}

/// The record of a key whose text an operator chose (a deployment's
/// bootstrap key, kept in a secret store), for `tenant`. Refuses text that
/// does not have a key's shape.
pub fn adopt(secret: &str, tenant: &str, description: &str) -> Result<ApiKey> {
    validate_tenant(tenant)?;
    if !well_formed(secret) {
        return Err(Error::invalid_argument(
            "bootstrap_api_key",
            "is not an API key: `pdk_` and 64 hex digits (`paddock keys create` prints one \
             shape of it; any 32 random bytes in hex after `pdk_` will do)",
        ));
    }
    let mut id = [0u8; 8];
    getrandom::fill(&mut id)
        .map_err(|e| Error::unavailable(format!("the system cannot give random bytes: {e}")))?;
    Ok(ApiKey {
        id: format!("key_{}", crate::ids::hex(&id)),
        tenant: tenant.to_owned(),
        secret_sha256: sha256(secret),
        description: description.to_owned(),
        created_at: SystemTime::now(),
        revoked_at: None,
    })
}

/// The hash a key is stored and looked up by.
pub fn sha256(key: &str) -> String {
    crate::ids::sha256_hex(key)
}

/// Whether `text` has the shape of a key (checked before any lookup).
pub fn well_formed(text: &str) -> bool {
    text.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Tenant names: 1 to 63 letters, digits, `.`, `_` or `-`, starting with a
/// letter or digit.
pub fn validate_tenant(tenant: &str) -> Result<()> {
    let ok = (1..=63).contains(&tenant.len())
        && tenant
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            "tenant",
            format!(
                "{tenant:?} is not a tenant name: 1 to 63 letters, digits, '.', '_' or '-', \
                 starting with a letter or digit"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_well_formed_and_stored_as_their_hash_only() {
        let a = generate("team-a", "ci").unwrap();
        let b = generate("team-a", "ci").unwrap();
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.record.id, b.record.id);
        assert!(well_formed(&a.secret), "{}", a.secret);
        assert_eq!(a.record.secret_sha256, sha256(&a.secret));
        assert!(!a.record.secret_sha256.contains(&a.secret[PREFIX.len()..]));
        assert!(!well_formed("pdk_short"));
        assert!(!well_formed(&a.secret.replace("pdk_", "pdx_")));
    }

    #[test]
    fn tenant_names_are_checked() {
        for good in ["a", "team-a", "Team_1.prod"] {
            validate_tenant(good).unwrap();
        }
        for bad in ["", "-a", "a b", "ä", &"x".repeat(64)] {
            assert!(validate_tenant(bad).is_err(), "{bad:?}");
        }
    }
}
