//! Named volumes: made, listed and removed per tenant, and resolved from
//! the names a create gives to the ids providers mount, so that a sandbox
//! mounts nothing but its own tenant's volumes.

use tracing::{info, instrument, warn};

use super::{Manager, SandboxSpec};
use crate::clock;
use crate::error::{Error, Result};
use crate::ids;
use crate::store::{VolumeRecord, VolumeRemoval};

/// The most volumes one tenant may have.
pub const MAX_VOLUMES_PER_TENANT: usize = 1000;

impl Manager {
    /// Makes the tenant's volume `name` on `provider` (the default when
    /// `None`): the record first, then the provider's storage, and the
    /// record goes again when the provider cannot make it.
    #[instrument(name = "volume.create", skip(self))]
    pub async fn create_volume(
        &self,
        tenant: &str,
        name: &str,
        provider: Option<&str>,
    ) -> Result<VolumeRecord> {
        let provider_name = provider.unwrap_or_else(|| self.providers().default_name());
        let provider = self.providers().get(provider_name)?.clone();
        if !provider.capabilities().volumes {
            return Err(Error::failed_precondition(format!(
                "provider: {provider_name} cannot hold volumes (see its `volumes` capability in \
                 ListProviders)"
            )));
        }
        if self.store().list_volumes(tenant).await?.len() >= MAX_VOLUMES_PER_TENANT {
            return Err(Error::resource_exhausted(format!(
                "the tenant has {MAX_VOLUMES_PER_TENANT} volumes, the most allowed; delete one \
                 first"
            )));
        }
        let record = VolumeRecord {
            id: ids::new_volume_id(),
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            provider: provider_name.to_owned(),
            created_at: clock::now(),
        };
        self.store().insert_volume(&record).await?;
        let made = self
            .call(
                "provider.create_volume",
                provider.create_volume(&record.id, tenant),
            )
            .await;
        if let Err(error) = made {
            if let Err(cleanup) = self.store().delete_volume(tenant, name).await {
                warn!(volume_id = %record.id, error = %cleanup, "cannot remove the record of a volume its provider did not make");
            }
            return Err(error);
        }
        info!(volume_id = %record.id, provider = %record.provider, "volume made");
        Ok(record)
    }

    /// The tenant's volume `name`, with the sandboxes (not DELETED) that
    /// mount it.
    pub async fn get_volume(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(VolumeRecord, Vec<String>)> {
        let volume = self
            .store()
            .get_volume(tenant, name)
            .await?
            .ok_or_else(|| no_volume(name))?;
        let users = self.store().volume_users(&volume.id).await?;
        Ok((volume, users))
    }

    /// The tenant's volumes, by name.
    pub async fn list_volumes(&self, tenant: &str) -> Result<Vec<VolumeRecord>> {
        self.store().list_volumes(tenant).await
    }

    /// Removes the tenant's volume `name` and its data, unless a sandbox
    /// that is not DELETED mounts it.
    #[instrument(name = "volume.delete", skip(self))]
    pub async fn delete_volume(&self, tenant: &str, name: &str) -> Result<()> {
        let volume = match self.store().delete_volume(tenant, name).await? {
            VolumeRemoval::Removed(volume) => volume,
            VolumeRemoval::Missing => return Err(no_volume(name)),
            VolumeRemoval::InUse(users) => {
                return Err(Error::failed_precondition(format!(
                    "volume {name:?} is mounted by {} not deleted: {}; delete {} first",
                    plural(users.len(), "sandbox", "sandboxes"),
                    users.join(", "),
                    if users.len() == 1 { "it" } else { "them" }
                )));
            }
        };
        // The record is gone, so nothing mounts the volume from now on; its
        // storage goes next. Should that fail, the data stays behind on the
        // provider under the volume's id, and the log says so.
        let provider = self.providers().get(&volume.provider)?.clone();
        if let Err(error) = self
            .call("provider.delete_volume", provider.delete_volume(&volume.id))
            .await
        {
            warn!(volume_id = %volume.id, %error, "the volume's record is gone but its storage could not be removed");
        }
        info!(volume_id = %volume.id, "volume deleted");
        Ok(())
    }

    /// Fills in the id of each volume `spec` mounts from the tenant's
    /// volumes of those names, held by `provider`. Providers make a
    /// volume's storage again when they make a sandbox that mounts it, so a
    /// crash between a volume's record and its storage loses nothing.
    pub(super) async fn resolve_volumes(
        &self,
        tenant: &str,
        provider: &str,
        spec: &mut SandboxSpec,
    ) -> Result<()> {
        for (i, mount) in spec.volumes.iter_mut().enumerate() {
            let volume = self
                .store()
                .get_volume(tenant, &mount.name)
                .await?
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "volumes[{i}].name: there is no volume named {:?}; make it with \
                         VolumeService.CreateVolume first",
                        mount.name
                    ))
                })?;
            if volume.provider != provider {
                return Err(Error::failed_precondition(format!(
                    "volumes[{i}].name: volume {:?} is held by provider {} and this sandbox \
                     runs on {provider}",
                    mount.name, volume.provider
                )));
            }
            mount.volume_id = volume.id;
        }
        Ok(())
    }
}

fn no_volume(name: &str) -> Error {
    Error::not_found(format!(
        "there is no volume named {:?}",
        super::rules::shorten(name)
    ))
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}
