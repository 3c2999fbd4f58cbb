//! `paddock.v1.FileService`: checks each call and the sandbox, then relays
//! it to the sandbox's agent (through [`crate::agent_client`]), which does
//! the file work. Transfers pass
//! through chunk by chunk: the server never holds a whole file, and HTTP/2
//! flow control makes a slow side slow the other down.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

use super::audit::{self, audited, unaudited};
use super::auth::caller_of;
use super::convert::file as convert;
use crate::agent_client::AgentStream;
use crate::pb;
use crate::pb::file_service_server::FileService;
use crate::sandbox::Manager;
use crate::telemetry::{Direction, Metrics};

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
    metrics: Arc<Metrics>,
) -> (
    impl Stream<Item = M> + Send + 'static,
    oneshot::Receiver<Status>,
) {
    let (failed, failure) = oneshot::channel::<Status>();
    let state = (Some(first), rest, Some(failed));
    let stream = futures::stream::unfold(state, move |(first, mut rest, mut failed)| {
        let metrics = metrics.clone();
        async move {
            if let Some(first) = first {
                return Some((first, (None, rest, failed)));
            }
            let refusal = match rest.message().await {
                Ok(Some(message)) => match chunk_len(&message)
                    .map_or(Ok(0), |len| convert::chunk(len).map(|()| len))
                {
                    Ok(bytes) => {
                        metrics.bytes_moved(Direction::Upload, bytes as u64);
                        return Some((message, (None, rest, failed)));
                    }
                    Err(error) => error.into(),
                },
                Ok(None) => return None,
                Err(status) => status,
            };
            if let Some(failed) = failed.take() {
                let _ = failed.send(refusal);
            }
            std::future::pending::<Option<(M, _)>>().await
        }
    });
    (stream, failure)
}

type Relayed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Passes an agent's answer stream on, noting activity on the sandbox and
/// counting the bytes of content (`chunk_len`) as chunks flow.
fn relay_download<T: Send + 'static>(
    manager: Manager,
    sandbox_id: String,
    answers: AgentStream<T>,
    chunk_len: fn(&T) -> usize,
) -> Relayed<T> {
    Box::pin(answers.then(move |item| {
        let manager = manager.clone();
        let sandbox_id = sandbox_id.clone();
        async move {
            let _ = manager.note_activity(&sandbox_id).await;
            if let Ok(answer) = &item {
                manager
                    .metrics()
                    .bytes_moved(Direction::Download, chunk_len(answer) as u64);
            }
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
        let first = inbound.message().await?;
        let header = convert::upload_header(first)?;
        let entry = audit::Entry::new(&caller, &header);
        let outcome = async {
            let id = convert::upload(&header)?;
            let agent = self.manager.agent(&caller.tenant, &id).await?;
            let first = pb::UploadRequest {
                request: Some(R::Header(header)),
            };
            let metrics = self.manager.metrics().clone();
            let (stream, failure) = forward(
                first,
                inbound,
                |m| match &m.request {
                    Some(R::Chunk(chunk)) => Some(chunk.len()),
                    _ => None,
                },
                metrics,
            );
            tokio::select! {
                answer = agent.upload(stream) => Ok(Response::new(answer?)),
                Ok(status) = failure => Err(status),
            }
        }
        .await;
        entry.record(outcome)
    }

    type DownloadStream = Relayed<pb::DownloadResponse>;

    async fn download(
        &self,
        request: Request<pb::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        unaudited(request, async |tenant, request| {
            let id = convert::download(&request)?;
            let agent = self.manager.agent(&tenant, &id).await?;
            let answers = agent.download(request).await?;
            Ok(relay_download(
                self.manager.clone(),
                id,
                answers,
                |answer| match &answer.response {
                    Some(pb::download_response::Response::Chunk(chunk)) => chunk.len(),
                    _ => 0,
                },
            ))
        })
        .await
    }

    async fn upload_archive(
        &self,
        request: Request<Streaming<pb::UploadArchiveRequest>>,
    ) -> Result<Response<pb::UploadArchiveResponse>, Status> {
        use pb::upload_archive_request::Request as R;
        let caller = caller_of(&request);
        let mut inbound = request.into_inner();
        let first = inbound.message().await?;
        let header = convert::upload_archive_header(first)?;
        let entry = audit::Entry::new(&caller, &header);
        let outcome = async {
            let id = convert::upload_archive(&header)?;
            let agent = self.manager.agent(&caller.tenant, &id).await?;
            let first = pb::UploadArchiveRequest {
                request: Some(R::Header(header)),
            };
            let metrics = self.manager.metrics().clone();
            let (stream, failure) = forward(
                first,
                inbound,
                |m| match &m.request {
                    Some(R::Chunk(chunk)) => Some(chunk.len()),
                    _ => None,
                },
                metrics,
            );
            tokio::select! {
                answer = agent.upload_archive(stream) => Ok(Response::new(answer?)),
                Ok(status) = failure => Err(status),
            }
        }
        .await;
        entry.record(outcome)
    }

    type DownloadArchiveStream = Relayed<pb::DownloadArchiveResponse>;

    async fn download_archive(
        &self,
        request: Request<pb::DownloadArchiveRequest>,
    ) -> Result<Response<Self::DownloadArchiveStream>, Status> {
        unaudited(request, async |tenant, request| {
            let id = convert::download_archive(&request)?;
            let agent = self.manager.agent(&tenant, &id).await?;
            let answers = agent.download_archive(request).await?;
            Ok(relay_download(
                self.manager.clone(),
                id,
                answers,
                |answer| answer.chunk.len(),
            ))
        })
        .await
    }

    async fn stat(
        &self,
        request: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let id = convert::stat(&request)?;
            self.manager.agent(&tenant, &id).await?.stat(request).await
        })
        .await
    }

    async fn list_dir(
        &self,
        request: Request<pb::ListDirRequest>,
    ) -> Result<Response<pb::ListDirResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let id = convert::list_dir(&request)?;
            self.manager
                .agent(&tenant, &id)
                .await?
                .list_dir(request)
                .await
        })
        .await
    }

    async fn make_dir(
        &self,
        request: Request<pb::MakeDirRequest>,
    ) -> Result<Response<pb::MakeDirResponse>, Status> {
        audited(request, async |caller, request| {
            let id = convert::make_dir(&request)?;
            let agent = self.manager.agent(&caller.tenant, &id).await?;
            agent.make_dir(request).await
        })
        .await
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        audited(request, async |caller, request| {
            let id = convert::remove(&request)?;
            let agent = self.manager.agent(&caller.tenant, &id).await?;
            agent.remove(request).await
        })
        .await
    }

    async fn r#move(
        &self,
        request: Request<pb::MoveRequest>,
    ) -> Result<Response<pb::MoveResponse>, Status> {
        audited(request, async |caller, request| {
            let id = convert::move_request(&request)?;
            let agent = self.manager.agent(&caller.tenant, &id).await?;
            agent.r#move(request).await
        })
        .await
    }

    async fn read_file(
        &self,
        request: Request<pb::ReadFileRequest>,
    ) -> Result<Response<pb::ReadFileResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let id = convert::read_file(&request)?;
            let agent = self.manager.agent(&tenant, &id).await?;
            let answer = agent.read_file(request).await?;
            self.manager
                .metrics()
                .bytes_moved(Direction::Download, answer.content.len() as u64);
            Ok(answer)
        })
        .await
    }

    async fn write_file(
        &self,
        request: Request<pb::WriteFileRequest>,
    ) -> Result<Response<pb::WriteFileResponse>, Status> {
        audited(request, async |caller, request| {
            let id = convert::write_file(&request)?;
            let agent = self.manager.agent(&caller.tenant, &id).await?;
            let bytes = request.content.len() as u64;
            let answer = agent.write_file(request).await?;
            self.manager.metrics().bytes_moved(Direction::Upload, bytes);
            Ok(answer)
        })
        .await
    }

    async fn edit_file(
        &self,
        request: Request<pb::EditFileRequest>,
    ) -> Result<Response<pb::EditFileResponse>, Status> {
        audited(request, async |caller, request| {
            let id = convert::edit_file(&request)?;
            let agent = self.manager.agent(&caller.tenant, &id).await?;
            agent.edit_file(request).await
        })
        .await
    }

    async fn find_files(
        &self,
        request: Request<pb::FindFilesRequest>,
    ) -> Result<Response<pb::FindFilesResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let id = convert::find_files(&request)?;
            self.manager
                .agent(&tenant, &id)
                .await?
                .find_files(request)
                .await
        })
        .await
    }

    async fn grep(
        &self,
        request: Request<pb::GrepRequest>,
    ) -> Result<Response<pb::GrepResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let id = convert::grep(&request)?;
            self.manager.agent(&tenant, &id).await?.grep(request).await
        })
        .await
    }
}
