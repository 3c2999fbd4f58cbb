//! The deployment's bootstrap API key (`--bootstrap-api-key`, from a
//! Secret in the Helm chart): added for its tenant when the store does not
//! have it, left alone when it does, and never brought back once revoked.

use tracing::{info, warn};

use crate::error::ErrorKind;
use crate::keys;
use crate::store::Store;

/// Makes sure the store knows `secret` as a key of `tenant`.
pub(super) async fn ensure_bootstrap_key(
    store: &dyn Store,
    secret: &str,
    tenant: &str,
) -> anyhow::Result<()> {
    let record = keys::adopt(secret, tenant, "bootstrap key (--bootstrap-api-key)")?;
    match store.api_key_by_hash(&record.secret_sha256).await? {
        Some(existing) if existing.revoked_at.is_some() => {
            warn!(
                key_id = %existing.id,
                "the bootstrap API key was revoked and stays revoked: give the server another \
                 one, or none"
            );
        }
        Some(_) => {}
        None => match store.insert_api_key(&record).await {
            Ok(()) => info!(key_id = %record.id, tenant, "bootstrap API key added"),
            // Another replica added it at the same moment.
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error.into()),
        },
    }
    Ok(())
}
