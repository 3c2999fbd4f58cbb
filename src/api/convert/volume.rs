//! VolumeService messages: names checked, records to `VolumeInfo`.

use std::collections::HashSet;

use super::fields::timestamp;
use crate::error::{Error, Result};
use crate::pb;
use crate::sandbox::Volume;
use crate::sandbox::rules::{self, MAX_VOLUMES};
use crate::store::VolumeRecord;

/// A volume name from field `field`, checked.
pub fn volume_name(field: &str, name: String) -> Result<String> {
    rules::check_volume_name(field, &name)?;
    Ok(name)
}

/// The provider a CreateVolume names, `None` for the default.
pub fn provider(name: String) -> Result<Option<String>> {
    if name.len() > 63 {
        return Err(Error::invalid_argument(
            "provider",
            "is longer than 63 characters; ListProviders names the providers",
        ));
    }
    Ok((!name.is_empty()).then_some(name))
}

/// A volume as the API shows it, with the sandboxes that mount it.
pub fn volume_to_pb(volume: &VolumeRecord, mounted_by: Vec<String>) -> pb::VolumeInfo {
    pb::VolumeInfo {
        name: volume.name.clone(),
        id: volume.id.clone(),
        provider: volume.provider.clone(),
        create_time: Some(timestamp(volume.created_at)),
        mounted_by,
    }
}

/// The mounts of a CreateSandbox or a template, checked.
pub(super) fn volumes_from_pb(volumes: Vec<pb::Volume>) -> Result<Vec<Volume>> {
    if volumes.len() > MAX_VOLUMES {
        return Err(Error::invalid_argument(
            "volumes",
            format!(
                "has {} volumes; at most {MAX_VOLUMES} are allowed",
                volumes.len()
            ),
        ));
    }
    let mut mount_paths = HashSet::new();
    volumes
        .into_iter()
        .enumerate()
        .map(|(i, volume)| {
            let pb::Volume {
                name,
                mount_path,
                read_only,
            } = volume;
            rules::check_volume_name(&format!("volumes[{i}].name"), &name)?;
            let field = format!("volumes[{i}].mount_path");
            rules::check_absolute_path(&field, &mount_path)?;
            if mount_path == "/"
                || mount_path == "/.paddock"
                || mount_path.starts_with("/.paddock/")
            {
                return Err(Error::invalid_argument(
                    &field,
                    format!(
                        "{mount_path:?} cannot hold a volume: / is the sandbox's root and \
                         /.paddock its agent's"
                    ),
                ));
            }
            if !mount_paths.insert(mount_path.clone()) {
                return Err(Error::invalid_argument(
                    &field,
                    format!("{mount_path:?} is used by another volume"),
                ));
            }
            Ok(Volume {
                name,
                mount_path,
                read_only,
                volume_id: String::new(),
            })
        })
        .collect()
}
