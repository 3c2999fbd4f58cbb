//! `paddock.v1.VolumeService`.

use tonic::{Request, Response, Status};

use super::audit::{audited, unaudited};
use super::convert::volume::{provider, volume_name, volume_to_pb};
use crate::pb;
use crate::pb::volume_service_server::VolumeService;
use crate::sandbox::Manager;

/// The named volume service.
#[derive(Clone)]
pub struct VolumeApi {
    manager: Manager,
}

impl VolumeApi {
    /// A service over `manager`.
    pub fn new(manager: Manager) -> Self {
        Self { manager }
    }
}

#[tonic::async_trait]
impl VolumeService for VolumeApi {
    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::CreateVolumeResponse>, Status> {
        audited(request, async |caller, request| {
            let pb::CreateVolumeRequest {
                name,
                provider: provider_name,
            } = request;
            let name = volume_name("name", name)?;
            let provider_name = provider(provider_name)?;
            let volume = self
                .manager
                .create_volume(&caller.tenant, &name, provider_name.as_deref())
                .await?;
            Ok(pb::CreateVolumeResponse {
                volume: Some(volume_to_pb(&volume, Vec::new())),
            })
        })
        .await
    }

    async fn get_volume(
        &self,
        request: Request<pb::GetVolumeRequest>,
    ) -> Result<Response<pb::GetVolumeResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let pb::GetVolumeRequest { name } = request;
            let name = volume_name("name", name)?;
            let (volume, users) = self.manager.get_volume(&tenant, &name).await?;
            Ok(pb::GetVolumeResponse {
                volume: Some(volume_to_pb(&volume, users)),
            })
        })
        .await
    }

    async fn list_volumes(
        &self,
        request: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let pb::ListVolumesRequest {} = request;
            let volumes = self.manager.list_volumes(&tenant).await?;
            Ok(pb::ListVolumesResponse {
                volumes: volumes
                    .iter()
                    .map(|volume| volume_to_pb(volume, Vec::new()))
                    .collect(),
            })
        })
        .await
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        audited(request, async |caller, request| {
            let pb::DeleteVolumeRequest { name } = request;
            let name = volume_name("name", name)?;
            self.manager.delete_volume(&caller.tenant, &name).await?;
            Ok(pb::DeleteVolumeResponse {})
        })
        .await
    }
}
