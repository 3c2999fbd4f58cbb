//! `paddock.v1.SandboxService`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::audit::{self, audited, unaudited};
use super::auth::{caller_of, tenant_of};
use super::convert;
use super::preview::PreviewUrls;
use crate::pb;
use crate::pb::sandbox_service_server::SandboxService;
use crate::sandbox::Manager;

/// The sandbox lifecycle service.
#[derive(Clone)]
pub struct SandboxApi {
    manager: Manager,
    shutdown: watch::Receiver<bool>,
    urls: PreviewUrls,
}

impl SandboxApi {
    /// A service over `manager`. Open watch streams end with UNAVAILABLE
    /// when `shutdown` becomes true, so that a graceful shutdown does not
    /// wait on them and their clients know to watch again elsewhere.
    /// Public ports are shown with their preview `urls`.
    pub fn new(manager: Manager, shutdown: watch::Receiver<bool>, urls: PreviewUrls) -> Self {
        Self {
            manager,
            shutdown,
            urls,
        }
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
        let mut entry = audit::Entry::new(&caller, &request);
        let outcome = async {
            let create = convert::create_request(request)?;
            Ok(self.manager.create(&caller.tenant, create).await?)
        }
        .await;
        if let Ok((sandbox, created)) = &outcome {
            let action = if *created {
                "create"
            } else {
                "create (returned existing)"
            };
            entry.acted_on(&sandbox.id, action);
        }
        let (sandbox, created) = entry.record(outcome)?;
        Ok(Response::new(pb::CreateSandboxResponse {
            sandbox: Some(convert::sandbox_to_pb(&sandbox, &self.urls)),
            created,
        }))
    }

    async fn get_sandbox(
        &self,
        request: Request<pb::GetSandboxRequest>,
    ) -> Result<Response<pb::GetSandboxResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let pb::GetSandboxRequest { sandbox_id } = request;
            let id = convert::sandbox_id("sandbox_id", sandbox_id)?;
            let sandbox = self.manager.get(&tenant, &id).await?;
            Ok(pb::GetSandboxResponse {
                sandbox: Some(convert::sandbox_to_pb(&sandbox, &self.urls)),
            })
        })
        .await
    }

    async fn list_sandboxes(
        &self,
        request: Request<pb::ListSandboxesRequest>,
    ) -> Result<Response<pb::ListSandboxesResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let query = convert::list_query(request)?;
            let page = self.manager.list(&tenant, query).await?;
            Ok(pb::ListSandboxesResponse {
                sandboxes: page
                    .sandboxes
                    .iter()
                    .map(|sandbox| convert::sandbox_to_pb(sandbox, &self.urls))
                    .collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
            })
        })
        .await
    }

    async fn update_sandbox(
        &self,
        request: Request<pb::UpdateSandboxRequest>,
    ) -> Result<Response<pb::UpdateSandboxResponse>, Status> {
        audited(request, async |caller, request| {
            let (id, update) = convert::update_request(request)?;
            let sandbox = self.manager.update(&caller.tenant, &id, update).await?;
            Ok(pb::UpdateSandboxResponse {
                sandbox: Some(convert::sandbox_to_pb(&sandbox, &self.urls)),
            })
        })
        .await
    }

    async fn stop_sandbox(
        &self,
        request: Request<pb::StopSandboxRequest>,
    ) -> Result<Response<pb::StopSandboxResponse>, Status> {
        audited(request, async |caller, request| {
            let pb::StopSandboxRequest { sandbox_id } = request;
            let id = convert::sandbox_id("sandbox_id", sandbox_id)?;
            let sandbox = self
                .manager
                .stop(&caller.tenant, &id, "stopped by request")
                .await?;
            Ok(pb::StopSandboxResponse {
                sandbox: Some(convert::sandbox_to_pb(&sandbox, &self.urls)),
            })
        })
        .await
    }

    async fn start_sandbox(
        &self,
        request: Request<pb::StartSandboxRequest>,
    ) -> Result<Response<pb::StartSandboxResponse>, Status> {
        audited(request, async |caller, request| {
            let pb::StartSandboxRequest { sandbox_id } = request;
            let id = convert::sandbox_id("sandbox_id", sandbox_id)?;
            let sandbox = self.manager.start(&caller.tenant, &id).await?;
            Ok(pb::StartSandboxResponse {
                sandbox: Some(convert::sandbox_to_pb(&sandbox, &self.urls)),
            })
        })
        .await
    }

    async fn delete_sandbox(
        &self,
        request: Request<pb::DeleteSandboxRequest>,
    ) -> Result<Response<pb::DeleteSandboxResponse>, Status> {
        audited(request, async |caller, request| {
            let pb::DeleteSandboxRequest { sandbox_id } = request;
            let id = convert::sandbox_id("sandbox_id", sandbox_id)?;
            let sandbox = self
                .manager
                .delete(&caller.tenant, &id, "deleted by request")
                .await?;
            Ok(pb::DeleteSandboxResponse {
                sandbox: Some(convert::sandbox_to_pb(&sandbox, &self.urls)),
            })
        })
        .await
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
        // At shutdown the stream ends with UNAVAILABLE saying where to pick
        // up: the revision of the last event sent.
        let last_sent = Arc::new(AtomicI64::new(after_revision));
        let stopped = shutdown_begun(self.shutdown.clone());
        let farewell = {
            let last_sent = last_sent.clone();
            let stopped = shutdown_begun(self.shutdown.clone());
            futures::stream::once(async move {
                stopped.await;
                Err(Status::unavailable(format!(
                    "the server is shutting down; watch again through another server, or this \
                     one once it is back, with after_revision {} to miss nothing",
                    last_sent.load(Ordering::Relaxed)
                )))
            })
        };
        let urls = self.urls.clone();
        let stream = events
            .map(move |event| {
                let event = event.map_err(Status::from)?;
                last_sent.store(event.revision, Ordering::Relaxed);
                Ok(convert::event_to_pb(&event, &urls))
            })
            .take_until(stopped)
            .chain(farewell);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_sandbox_metrics(
        &self,
        request: Request<pb::GetSandboxMetricsRequest>,
    ) -> Result<Response<pb::GetSandboxMetricsResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let id = convert::sandbox_id("sandbox_id", request.sandbox_id)?;
            let measured = self.manager.usage(&tenant, &id).await?;
            Ok(pb::GetSandboxMetricsResponse {
                metrics: Some(convert::usage_to_pb(&measured)),
            })
        })
        .await
    }

    async fn snapshot_sandbox(
        &self,
        request: Request<pb::SnapshotSandboxRequest>,
    ) -> Result<Response<pb::SnapshotSandboxResponse>, Status> {
        audited(request, async |caller, request| {
            let pb::SnapshotSandboxRequest {
                sandbox_id,
                template,
            } = request;
            let id = convert::sandbox_id("sandbox_id", sandbox_id)?;
            let name = convert::template::template_name("template", template)?;
            let made = self.manager.snapshot(&caller.tenant, &id, &name).await?;
            Ok(pb::SnapshotSandboxResponse {
                template: made.name,
                version: made.version,
                image: made.owned_image.unwrap_or_default(),
            })
        })
        .await
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

/// Completes when shutdown begins (or the server is gone).
pub(super) async fn shutdown_begun(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopping| *stopping).await;
}
