//! Named volumes as the engine's named volumes, one per Paddock volume,
//! named after its id and labelled with its tenant and the store's scope.

use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::RemoveVolumeOptions;

use super::DockerProvider;
use super::errors::{engine_error, is_not_found, status_code};
use super::layout::{self, labels_of};
use crate::error::{Error, Result};
use crate::sandbox::Volume;

/// The label holding the Paddock volume's id.
const LABEL_VOLUME_ID: &str = "io.paddock.volume-id";
/// The role of a named volume's engine volume.
const ROLE_VOLUME: &str = "volume";

impl DockerProvider {
    pub(super) async fn make_volume(&self, volume_id: &str, tenant: &str) -> Result<()> {
        let mut labels = labels_of(&self.settings.scope, ROLE_VOLUME);
        labels.insert(LABEL_VOLUME_ID.to_owned(), volume_id.to_owned());
        labels.insert(layout::LABEL_TENANT.to_owned(), tenant.to_owned());
        // Creating a volume that exists returns it: a retry is harmless.
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(Volume::object_name_of(volume_id)),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map_err(|e| engine_error("creating a volume", e))?;
        Ok(())
    }

    pub(super) async fn remove_volume(&self, volume_id: &str) -> Result<()> {
        let name = Volume::object_name_of(volume_id);
        match self
            .docker
            .remove_volume(&name, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => Err(Error::failed_precondition(format!(
                "volume {volume_id}: a container on the engine still uses it"
            ))),
            Err(e) => Err(engine_error("removing a volume", e)),
        }
    }
}
