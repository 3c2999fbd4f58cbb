//! `paddock.v1.TemplateService`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::audit::{self, audited, unaudited};
use super::auth::caller_of;
use super::convert::template::{spec_from_pb, template_name, template_reference, template_to_pb};
use crate::error::Error;
use crate::pb;
use crate::pb::build_template_request::Request as Up;
use crate::pb::build_template_response::Response as Down;
use crate::pb::template_service_server::TemplateService;
use crate::sandbox::{Manager, TemplateBuild, TemplateRecord};

/// How long a build may wait for its header.
const FIRST_MESSAGE_DEADLINE: Duration = Duration::from_secs(30);
/// The largest build context.
const MAX_CONTEXT_BYTES: u64 = 256 << 20;
/// Log lines held for a slow reader before the build waits for it.
const LOG_BUFFER: usize = 64;

/// The template service.
#[derive(Clone)]
pub struct TemplateApi {
    manager: Manager,
}

impl TemplateApi {
    /// A service over `manager`.
    pub fn new(manager: Manager) -> Self {
        Self { manager }
    }

    /// `template` as the API shows it, with its warm pool now.
    async fn shown(&self, template: &TemplateRecord) -> crate::error::Result<pb::Template> {
        let pool = self.manager.warm_pool(template).await?;
        Ok(template_to_pb(template, pool.as_ref()))
    }
}

type BuildStream = Pin<Box<dyn Stream<Item = Result<pb::BuildTemplateResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TemplateService for TemplateApi {
    async fn create_template(
        &self,
        request: Request<pb::CreateTemplateRequest>,
    ) -> Result<Response<pb::CreateTemplateResponse>, Status> {
        audited(request, async |caller, request| {
            let pb::CreateTemplateRequest { name, spec } = request;
            let name = template_name("name", name)?;
            let spec = spec_from_pb("spec", spec)?;
            let template = self
                .manager
                .create_template(&caller.tenant, &name, spec)
                .await?;
            Ok(pb::CreateTemplateResponse {
                template: Some(self.shown(&template).await?),
            })
        })
        .await
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::GetTemplateResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let pb::GetTemplateRequest { name } = request;
            let reference = template_reference("name", name)?;
            let template = self.manager.get_template(&tenant, &reference).await?;
            Ok(pb::GetTemplateResponse {
                template: Some(self.shown(&template).await?),
            })
        })
        .await
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        unaudited(request, async |tenant, request| {
            let pb::ListTemplatesRequest {} = request;
            let templates = self.manager.list_templates(&tenant).await?;
            Ok(pb::ListTemplatesResponse {
                templates: {
                    let mut shown = Vec::with_capacity(templates.len());
                    for template in &templates {
                        shown.push(self.shown(template).await?);
                    }
                    shown
                },
            })
        })
        .await
    }

    async fn update_template(
        &self,
        request: Request<pb::UpdateTemplateRequest>,
    ) -> Result<Response<pb::UpdateTemplateResponse>, Status> {
        audited(request, async |caller, request| {
            let pb::UpdateTemplateRequest { name, spec } = request;
            let name = template_name("name", name)?;
            let spec = spec_from_pb("spec", spec)?;
            let template = self
                .manager
                .update_template(&caller.tenant, &name, spec)
                .await?;
            Ok(pb::UpdateTemplateResponse {
                template: Some(self.shown(&template).await?),
            })
        })
        .await
    }

    async fn delete_template(
        &self,
        request: Request<pb::DeleteTemplateRequest>,
    ) -> Result<Response<pb::DeleteTemplateResponse>, Status> {
        audited(request, async |caller, request| {
            let pb::DeleteTemplateRequest { name, force } = request;
            let name = template_name("name", name)?;
            self.manager
                .delete_template(&caller.tenant, &name, force)
                .await?;
            Ok(pb::DeleteTemplateResponse {})
        })
        .await
    }

    type BuildTemplateStream = BuildStream;

    async fn build_template(
        &self,
        request: Request<Streaming<pb::BuildTemplateRequest>>,
    ) -> Result<Response<BuildStream>, Status> {
        let caller = caller_of(&request);
        let mut requests = request.into_inner();
        let first = tokio::time::timeout(FIRST_MESSAGE_DEADLINE, requests.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no `header` message arrived within 30s"))??;
        let Some(Up::Header(header)) = first.and_then(|first| first.request) else {
            return Err(Status::invalid_argument(
                "request: the first BuildTemplate message must be `header`",
            ));
        };
        let entry = audit::Entry::new(&caller, &header);
        let build = match build_from_header(header) {
            Ok(build) => build,
            Err(error) => return entry.record(Err(Status::from(error))),
        };
        let (answers, answered) = mpsc::channel(LOG_BUFFER);
        let (log, mut logged) = mpsc::channel::<String>(LOG_BUFFER);
        let manager = self.manager.clone();
        // The build goes on if the caller leaves: its image is the
        // template's.
        tokio::spawn(async move {
            let relay = {
                let answers = answers.clone();
                async move {
                    while let Some(line) = logged.recv().await {
                        let answer = pb::BuildTemplateResponse {
                            response: Some(Down::Log(line)),
                        };
                        if answers.send(Ok(answer)).await.is_err() {
                            // Nobody reads: drain the log so the build goes on.
                            while logged.recv().await.is_some() {}
                        }
                    }
                }
            };
            let broke = Arc::new(Mutex::new(None));
            let context = context(requests, broke.clone());
            let built = manager.build_template(&caller.tenant, build, context, log);
            let (built, ()) = tokio::join!(built, relay);
            // A context the caller sent wrong fails the build; say why.
            let built = match (built, broke.lock().expect("context error").take()) {
                (Err(_), Some(why)) => Err(why),
                (built, _) => built,
            };
            let last = entry.record(built.map_err(Status::from)).map(|template| {
                pb::BuildTemplateResponse {
                    response: Some(Down::Template(template_to_pb(&template, None))),
                }
            });
            let _ = answers.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(answered))))
    }
}

fn build_from_header(header: pb::BuildTemplateHeader) -> crate::error::Result<TemplateBuild> {
    let pb::BuildTemplateHeader {
        name,
        dockerfile,
        spec,
        build_args,
    } = header;
    let name = template_name("header.name", name)?;
    let dockerfile = if dockerfile.is_empty() {
        "Dockerfile".to_owned()
    } else {
        dockerfile
    };
    if dockerfile.len() > 4096 || dockerfile.contains('\0') || dockerfile.starts_with('/') {
        return Err(Error::invalid_argument(
            "header.dockerfile",
            "must be a relative path inside the build context, at most 4096 bytes",
        ));
    }
    let spec = spec
        .map(|spec| spec_from_pb("header.spec", Some(spec)))
        .transpose()?;
    if build_args.len() > 256 || build_args.iter().any(|(k, v)| k.len() + v.len() > 8192) {
        return Err(Error::invalid_argument(
            "header.build_args",
            "at most 256 arguments of at most 8 KiB each",
        ));
    }
    Ok(TemplateBuild {
        name,
        dockerfile,
        build_args: build_args.into_iter().collect(),
        spec,
    })
}

/// The build context: the `context` chunks after the header, at most
/// [`MAX_CONTEXT_BYTES`]. Anything else ends it with an error, which fails
/// the build, and leaves in `broke` what the caller did wrong.
fn context(
    requests: Streaming<pb::BuildTemplateRequest>,
    broke: Arc<Mutex<Option<Error>>>,
) -> crate::provider::BuildContext {
    let mut total = 0u64;
    requests
        .map(move |message| {
            let wrong = match message {
                Err(status) => Error::invalid_argument(
                    "context",
                    format!("the build context broke off: {}", status.message()),
                ),
                Ok(pb::BuildTemplateRequest {
                    request: Some(Up::Context(chunk)),
                }) => {
                    total += chunk.len() as u64;
                    if total <= MAX_CONTEXT_BYTES {
                        return Ok::<Bytes, std::io::Error>(chunk);
                    }
                    Error::invalid_argument("context", "the build context is larger than 256 MiB")
                }
                Ok(_) => Error::invalid_argument(
                    "request",
                    "after the header, every BuildTemplate message must be `context`",
                ),
            };
            let said = wrong.message().to_owned();
            *broke.lock().expect("context error") = Some(wrong);
            Err(std::io::Error::other(said))
        })
        .boxed()
}
