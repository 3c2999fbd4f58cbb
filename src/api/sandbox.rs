//! `paddock.v1.SandboxService`.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::audit;
use super::auth::{caller_of, tenant_of};
use super::convert;
use crate::pb;
use crate::pb::sandbox_service_server::SandboxService;
use crate::sandbox::Manager;

/// The sandbox lifecycle service.
#[derive(Clone)]
pub struct SandboxApi {
    manager: Manager,
    shutdown: watch::Receiver<bool>,
}

impl SandboxApi {
    /// A service over `manager`. Open watch streams end when `shutdown`
    /// becomes true, so that a graceful shutdown does not wait on them.
    pub fn new(manager: Manager, shutdown: watch::Receiver<bool>) -> Self {
        Self { manager, shutdown }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchSandboxesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SandboxService for SandboxApi {
    async fn create_sandbox(
        &self,
        request: Request<pb::CreateSandboxRequest>,
    ) -> Result<Response<pb::CreateSandboxResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let detail = format!(
            "provider={} image={} name={}",
            request.provider,
            request.image,
            request.name.as_deref().unwrap_or("")
        );
        let outcome = async {
            let create = convert::create_request(request)?;
            let (sandbox, created) = self.manager.create(&caller.tenant, create).await?;
            Ok((sandbox, created))
        }
        .await;
        let id = outcome
            .as_ref()
            .map_or_else(|_| String::new(), |(sandbox, _)| sandbox.id.clone());
        let action = match &outcome {
            Ok((_, false)) => "create (returned existing)",
            _ => "create",
        };
        let (sandbox, created) = audit::record(&caller, action, &id, &detail, outcome)?;
        Ok(Response::new(pb::CreateSandboxResponse {
            sandbox: Some(convert::sandbox_to_pb(&sandbox)),
            created,
        }))
    }

    async fn get_sandbox(
        &self,
        request: Request<pb::GetSandboxRequest>,
    ) -> Result<Response<pb::GetSandboxResponse>, Status> {
        let tenant = tenant_of(&request);
        let pb::GetSandboxRequest { sandbox_id } = request.into_inner();
        let id = convert::sandbox_id("sandbox_id", sandbox_id)?;
        let sandbox = self.manager.get(&tenant, &id).await?;
        Ok(Response::new(pb::GetSandboxResponse {
            sandbox: Some(convert::sandbox_to_pb(&sandbox)),
        }))
    }

    async fn list_sandboxes(
        &self,
        request: Request<pb::ListSandboxesRequest>,
    ) -> Result<Response<pb::ListSandboxesResponse>, Status> {
        let tenant = tenant_of(&request);
        let query = convert::list_query(request.into_inner())?;
        let page = self.manager.list(&tenant, query).await?;
        Ok(Response::new(pb::ListSandboxesResponse {
            sandboxes: page.sandboxes.iter().map(convert::sandbox_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_sandbox(
        &self,
        request: Request<pb::UpdateSandboxRequest>,
    ) -> Result<Response<pb::UpdateSandboxResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let raw_id = request.sandbox_id.clone();
        let outcome = async {
            let (id, update) = convert::update_request(request)?;
            Ok(self.manager.update(&caller.tenant, &id, update).await?)
        }
        .await;
        let sandbox = audit::record(&caller, "update", &raw_id, "", outcome)?;
        Ok(Response::new(pb::UpdateSandboxResponse {
            sandbox: Some(convert::sandbox_to_pb(&sandbox)),
        }))
    }

    async fn stop_sandbox(
        &self,
        request: Request<pb::StopSandboxRequest>,
    ) -> Result<Response<pb::StopSandboxResponse>, Status> {
        let caller = caller_of(&request);
        let pb::StopSandboxRequest { sandbox_id } = request.into_inner();
        let outcome = async {
            let id = convert::sandbox_id("sandbox_id", sandbox_id.clone())?;
            Ok(self
                .manager
                .stop(&caller.tenant, &id, "stopped by request")
                .await?)
        }
        .await;
        let sandbox = audit::record(&caller, "stop", &sandbox_id, "", outcome)?;
        Ok(Response::new(pb::StopSandboxResponse {
            sandbox: Some(convert::sandbox_to_pb(&sandbox)),
        }))
    }

    async fn start_sandbox(
        &self,
        request: Request<pb::StartSandboxRequest>,
    ) -> Result<Response<pb::StartSandboxResponse>, Status> {
        let caller = caller_of(&request);
        let pb::StartSandboxRequest { sandbox_id } = request.into_inner();
        let outcome = async {
            let id = convert::sandbox_id("sandbox_id", sandbox_id.clone())?;
            Ok(self.manager.start(&caller.tenant, &id).await?)
        }
        .await;
        let sandbox = audit::record(&caller, "start", &sandbox_id, "", outcome)?;
        Ok(Response::new(pb::StartSandboxResponse {
            sandbox: Some(convert::sandbox_to_pb(&sandbox)),
        }))
    }

    async fn delete_sandbox(
        &self,
        request: Request<pb::DeleteSandboxRequest>,
    ) -> Result<Response<pb::DeleteSandboxResponse>, Status> {
        let caller = caller_of(&request);
        let pb::DeleteSandboxRequest { sandbox_id } = request.into_inner();
        let outcome = async {
            let id = convert::sandbox_id("sandbox_id", sandbox_id.clone())?;
            Ok(self
                .manager
                .delete(&caller.tenant, &id, "deleted by request")
                .await?)
        }
        .await;
        let sandbox = audit::record(&caller, "delete", &sandbox_id, "", outcome)?;
        Ok(Response::new(pb::DeleteSandboxResponse {
            sandbox: Some(convert::sandbox_to_pb(&sandbox)),
        }))
    }

    type WatchSandboxesStream = WatchStream;

    async fn watch_sandboxes(
        &self,
        request: Request<pb::WatchSandboxesRequest>,
    ) -> Result<Response<Self::WatchSandboxesStream>, Status> {
        let tenant = tenant_of(&request);
        let pb::WatchSandboxesRequest {
            after_revision,
            sandbox_id,
        } = request.into_inner();
        let sandbox_id = if sandbox_id.is_empty() {
            None
        } else {
            Some(convert::sandbox_id("sandbox_id", sandbox_id)?)
        };
        let events = self
            .manager
            .watch(&tenant, after_revision, sandbox_id)
            .await?;
        let mut shutdown = self.shutdown.clone();
        let stopped = async move {
            // Ends when shutdown begins, or when the sender is gone.
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        };
        let stream = events
            .map(|event| {
                event
                    .map(|e| convert::event_to_pb(&e))
                    .map_err(Status::from)
            })
            .take_until(stopped);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_providers(
        &self,
        _request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let providers = self.manager.list_providers().await;
        Ok(Response::new(pb::ListProvidersResponse {
            providers: providers
                .iter()
                .map(|(info, is_default)| convert::provider_to_pb(info, *is_default))
                .collect(),
        }))
    }
}
