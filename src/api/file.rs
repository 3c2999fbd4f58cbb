//! `paddock.v1.FileService`: checks each call and the sandbox, then relays
//! it to the sandbox's agent, which does the file work. Transfers pass
//! through chunk by chunk: the server never holds a whole file, and HTTP/2
//! flow control makes a slow side slow the other down.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

use super::audit;
use super::auth::{caller_of, tenant_of};
use super::convert;
use crate::agent_client::{AgentClient, AgentStream};
use crate::pb;
use crate::pb::file_service_server::FileService;
use crate::sandbox::Manager;

/// The largest upload chunk, as the proto documents.
const MAX_CHUNK_BYTES: usize = 1 << 20;
/// The longest path, as the proto documents.
const MAX_PATH_BYTES: usize = 4096;

/// The file service.
#[derive(Clone)]
pub struct FileApi {
    manager: Manager,
}

impl FileApi {
    /// A service relaying to the agents `manager` reaches.
    pub fn new(manager: Manager) -> Self {
        Self { manager }
    }

    async fn agent(&self, tenant: &str, sandbox_id: &str) -> Result<AgentClient, Status> {
        Ok(self.manager.agent(tenant, sandbox_id).await?)
    }
}

fn sandbox_id(id: &str) -> Result<String, Status> {
    Ok(convert::sandbox_id("sandbox_id", id.to_owned())?)
}

/// Checks a path field: given (unless `optional`), at most 4096 bytes, no
/// NUL byte. Where it resolves is the agent's business.
fn path(field: &str, value: &str, optional: bool) -> Result<(), Status> {
    if value.is_empty() && !optional {
        return Err(Status::invalid_argument(format!("{field}: is required")));
    }
    if value.len() > MAX_PATH_BYTES || value.contains('\0') {
        return Err(Status::invalid_argument(format!(
            "{field}: a path is at most {MAX_PATH_BYTES} bytes with no NUL byte"
        )));
    }
    Ok(())
}

fn mode(value: u32) -> Result<(), Status> {
    if value > 0o7777 {
        return Err(Status::invalid_argument(format!(
            "mode: {value:#o} has bits beyond 0o7777"
        )));
    }
    Ok(())
}

fn sha256(value: &str) -> Result<(), Status> {
    if !value.is_empty() && (value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(Status::invalid_argument(
            "sha256: must be 64 hexadecimal digits, or empty",
        ));
    }
    Ok(())
}

/// Relays a client stream to the agent: the checked first message, then
/// every message as it comes, one at a time. A broken caller stream must not
/// look like a finished one to the agent (it would keep what it got), so on
/// an error the relay stops feeding without ending, and reports the error
/// through the returned receiver; the caller then fails the call, which
/// resets the agent's stream.
fn forward<M: Send + 'static>(
    first: M,
    rest: Streaming<M>,
    chunk_len: fn(&M) -> Option<usize>,
) -> (
    impl Stream<Item = M> + Send + 'static,
    oneshot::Receiver<Status>,
) {
    let (failed, failure) = oneshot::channel::<Status>();
    let state = (Some(first), rest, Some(failed));
    let stream = futures::stream::unfold(state, move |(first, mut rest, mut failed)| async move {
        if let Some(first) = first {
            return Some((first, (None, rest, failed)));
        }
        let refusal = match rest.message().await {
            Ok(Some(message)) if chunk_len(&message).is_some_and(|n| n > MAX_CHUNK_BYTES) => {
                Status::invalid_argument(format!("chunk: at most {MAX_CHUNK_BYTES} bytes each"))
            }
            Ok(Some(message)) => return Some((message, (None, rest, failed))),
            Ok(None) => return None,
            Err(status) => status,
        };
        if let Some(failed) = failed.take() {
            let _ = failed.send(refusal);
        }
        std::future::pending::<Option<(M, _)>>().await
    });
    (stream, failure)
}

type Relayed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Passes an agent's answer stream on, noting activity on the sandbox as
/// chunks flow.
fn relay_download<T: Send + 'static>(
    manager: Manager,
    sandbox_id: String,
    answers: AgentStream<T>,
) -> Relayed<T> {
    Box::pin(answers.then(move |item| {
        let manager = manager.clone();
        let sandbox_id = sandbox_id.clone();
        async move {
            let _ = manager.note_activity(&sandbox_id).await;
            item.map_err(Status::from)
        }
    }))
}

#[tonic::async_trait]
impl FileService for FileApi {
    async fn upload(
        &self,
        request: Request<Streaming<pb::UploadRequest>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        use pb::upload_request::Request as R;
        let caller = caller_of(&request);
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.unwrap_or_default();
        let Some(R::Header(header)) = first.request.clone() else {
            return Err(Status::invalid_argument(
                "the first Upload message must be the header",
            ));
        };
        let (raw_id, target) = (header.sandbox_id.clone(), header.path.clone());
        let outcome = async {
            let id = sandbox_id(&header.sandbox_id)?;
            path("path", &header.path, false)?;
            mode(header.mode)?;
            sha256(&header.sha256)?;
            let agent = self.agent(&caller.tenant, &id).await?;
            let (stream, failure) = forward(first, inbound, |m| match &m.request {
                Some(R::Chunk(chunk)) => Some(chunk.len()),
                _ => None,
            });
            tokio::select! {
                answer = agent.upload(stream) => Ok(Response::new(answer?)),
                Ok(status) = failure => Err(status),
            }
        }
        .await;
        audit::record(&caller, "upload", &raw_id, &target, outcome)
    }

    type DownloadStream = Relayed<pb::DownloadResponse>;

    async fn download(
        &self,
        request: Request<pb::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let id = sandbox_id(&request.sandbox_id)?;
        path("path", &request.path, false)?;
        let agent = self.agent(&tenant, &id).await?;
        let answers = agent.download(request).await?;
        Ok(Response::new(relay_download(
            self.manager.clone(),
            id,
            answers,
        )))
    }

    async fn upload_archive(
        &self,
        request: Request<Streaming<pb::UploadArchiveRequest>>,
    ) -> Result<Response<pb::UploadArchiveResponse>, Status> {
        use pb::upload_archive_request::Request as R;
        let caller = caller_of(&request);
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.unwrap_or_default();
        let Some(R::Header(header)) = first.request.clone() else {
            return Err(Status::invalid_argument(
                "the first UploadArchive message must be the header",
            ));
        };
        let (raw_id, target) = (header.sandbox_id.clone(), header.path.clone());
        let outcome = async {
            let id = sandbox_id(&header.sandbox_id)?;
            path("path", &header.path, false)?;
            let agent = self.agent(&caller.tenant, &id).await?;
            let (stream, failure) = forward(first, inbound, |m| match &m.request {
                Some(R::Chunk(chunk)) => Some(chunk.len()),
                _ => None,
            });
            tokio::select! {
                answer = agent.upload_archive(stream) => Ok(Response::new(answer?)),
                Ok(status) = failure => Err(status),
            }
        }
        .await;
        audit::record(&caller, "upload archive", &raw_id, &target, outcome)
    }

    type DownloadArchiveStream = Relayed<pb::DownloadArchiveResponse>;

    async fn download_archive(
        &self,
        request: Request<pb::DownloadArchiveRequest>,
    ) -> Result<Response<Self::DownloadArchiveStream>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let id = sandbox_id(&request.sandbox_id)?;
        path("path", &request.path, false)?;
        let agent = self.agent(&tenant, &id).await?;
        let answers = agent.download_archive(request).await?;
        Ok(Response::new(relay_download(
            self.manager.clone(),
            id,
            answers,
        )))
    }

    async fn stat(
        &self,
        request: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let id = sandbox_id(&request.sandbox_id)?;
        path("path", &request.path, false)?;
        Ok(Response::new(
            self.agent(&tenant, &id).await?.stat(request).await?,
        ))
    }

    async fn list_dir(
        &self,
        request: Request<pb::ListDirRequest>,
    ) -> Result<Response<pb::ListDirResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let id = sandbox_id(&request.sandbox_id)?;
        path("path", &request.path, false)?;
        Ok(Response::new(
            self.agent(&tenant, &id).await?.list_dir(request).await?,
        ))
    }

    async fn make_dir(
        &self,
        request: Request<pb::MakeDirRequest>,
    ) -> Result<Response<pb::MakeDirResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let raw_id = request.sandbox_id.clone();
        let detail = request.path.clone();
        let outcome = async {
            let id = sandbox_id(&request.sandbox_id)?;
            path("path", &request.path, false)?;
            mode(request.mode)?;
            Ok(Response::new(
                self.agent(&caller.tenant, &id)
                    .await?
                    .make_dir(request)
                    .await?,
            ))
        }
        .await;
        audit::record(&caller, "make dir", &raw_id, &detail, outcome)
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let raw_id = request.sandbox_id.clone();
        let detail = request.path.clone();
        let outcome = async {
            let id = sandbox_id(&request.sandbox_id)?;
            path("path", &request.path, false)?;
            Ok(Response::new(
                self.agent(&caller.tenant, &id)
                    .await?
                    .remove(request)
                    .await?,
            ))
        }
        .await;
        audit::record(&caller, "remove", &raw_id, &detail, outcome)
    }

    async fn r#move(
        &self,
        request: Request<pb::MoveRequest>,
    ) -> Result<Response<pb::MoveResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let raw_id = request.sandbox_id.clone();
        let detail = format!("{} -> {}", request.source, request.destination);
        let outcome = async {
            let id = sandbox_id(&request.sandbox_id)?;
            path("source", &request.source, false)?;
            path("destination", &request.destination, false)?;
            Ok(Response::new(
                self.agent(&caller.tenant, &id)
                    .await?
                    .r#move(request)
                    .await?,
            ))
        }
        .await;
        audit::record(&caller, "move", &raw_id, &detail, outcome)
    }

    async fn read_file(
        &self,
        request: Request<pb::ReadFileRequest>,
    ) -> Result<Response<pb::ReadFileResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let id = sandbox_id(&request.sandbox_id)?;
        path("path", &request.path, false)?;
        Ok(Response::new(
            self.agent(&tenant, &id).await?.read_file(request).await?,
        ))
    }

    async fn write_file(
        &self,
        request: Request<pb::WriteFileRequest>,
    ) -> Result<Response<pb::WriteFileResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let raw_id = request.sandbox_id.clone();
        let detail = request.path.clone();
        let outcome = async {
            let id = sandbox_id(&request.sandbox_id)?;
            path("path", &request.path, false)?;
            mode(request.mode)?;
            Ok(Response::new(
                self.agent(&caller.tenant, &id)
                    .await?
                    .write_file(request)
                    .await?,
            ))
        }
        .await;
        audit::record(&caller, "write file", &raw_id, &detail, outcome)
    }

    async fn edit_file(
        &self,
        request: Request<pb::EditFileRequest>,
    ) -> Result<Response<pb::EditFileResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let raw_id = request.sandbox_id.clone();
        let detail = request.path.clone();
        let outcome = async {
            let id = sandbox_id(&request.sandbox_id)?;
            path("path", &request.path, false)?;
            Ok(Response::new(
                self.agent(&caller.tenant, &id)
                    .await?
                    .edit_file(request)
                    .await?,
            ))
        }
        .await;
        audit::record(&caller, "edit file", &raw_id, &detail, outcome)
    }

    async fn find_files(
        &self,
        request: Request<pb::FindFilesRequest>,
    ) -> Result<Response<pb::FindFilesResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let id = sandbox_id(&request.sandbox_id)?;
        path("path", &request.path, true)?;
        Ok(Response::new(
            self.agent(&tenant, &id).await?.find_files(request).await?,
        ))
    }

    async fn grep(
        &self,
        request: Request<pb::GrepRequest>,
    ) -> Result<Response<pb::GrepResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let id = sandbox_id(&request.sandbox_id)?;
        path("path", &request.path, true)?;
        Ok(Response::new(
            self.agent(&tenant, &id).await?.grep(request).await?,
        ))
    }
}
