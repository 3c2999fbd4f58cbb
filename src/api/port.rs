//! `paddock.v1.PortService`: PortForward relays a caller's stream to the
//! sandbox's agent, which dials the port inside the sandbox; ExposePort and
//! UnexposePort mark ports public for the preview proxy; CreatePreviewUrl
//! signs a preview token.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{oneshot, watch};
use tonic::{Request, Response, Status, Streaming};

use super::audit::{self, audited};
use super::auth::caller_of;
use super::convert::port as rules;
use super::preview::{Grant, PreviewSite};
use super::sandbox::shutdown_begun;
use crate::agent_client::AgentStream;
use crate::clock;
use crate::error::Error;
use crate::pb;
use crate::pb::port_service_server::PortService;
use crate::sandbox::Manager;
use crate::telemetry::Direction;

/// How long a PortForward stream may take to send its `start`.
const FIRST_MESSAGE_DEADLINE: Duration = Duration::from_secs(30);

/// The port service.
#[derive(Clone)]
pub struct PortApi {
    manager: Manager,
    shutdown: watch::Receiver<bool>,
    preview: PreviewSite,
}

impl PortApi {
    /// A service over `manager`, writing preview URLs of `preview`. Open
    /// forwards end with UNAVAILABLE when `shutdown` becomes true.
    pub fn new(manager: Manager, shutdown: watch::Receiver<bool>, preview: PreviewSite) -> Self {
        Self {
            manager,
            shutdown,
            preview,
        }
    }
}

type ForwardStream = Pin<Box<dyn Stream<Item = Result<pb::PortForwardResponse, Status>> + Send>>;

/// A malformed caller message: the error, and the request stream it came
/// on, held until the answer ends (dropping it earlier would reset the
/// stream before the caller reads why).
type Refusal = (Status, Streaming<pb::PortForwardRequest>);

/// What relays one forward's caller messages to the agent.
struct Inbound {
    requests: Streaming<pb::PortForwardRequest>,
    refuse: oneshot::Sender<Refusal>,
    manager: Manager,
    sandbox_id: String,
}

/// What relays the agent's answers back to the caller.
struct Outbound {
    responses: AgentStream<pb::PortForwardResponse>,
    refused: Option<oneshot::Receiver<Refusal>>,
    held_requests: Option<Streaming<pb::PortForwardRequest>>,
    stopping: Pin<Box<dyn Future<Output = ()> + Send>>,
    manager: Manager,
    sandbox_id: String,
    port: u16,
    ended: bool,
}

/// The caller's next message for the agent: bytes or the end of its
/// direction. The stream's end is the end of the caller's direction too.
async fn next_inbound(mut inbound: Inbound) -> Option<(pb::PortForwardRequest, Inbound)> {
    let refusal = match inbound.requests.message().await {
        Ok(Some(message)) => match &message.request {
            Some(pb::port_forward_request::Request::Data(data)) => {
                inbound
                    .manager
                    .metrics()
                    .bytes_moved(Direction::ForwardIn, data.len() as u64);
                note_activity(&inbound.manager, &inbound.sandbox_id).await;
                return Some((message, inbound));
            }
            Some(pb::port_forward_request::Request::CloseWrite(_)) => {
                return Some((message, inbound));
            }
            Some(pb::port_forward_request::Request::Start(_)) => {
                Status::invalid_argument("request: only the first PortForward message is `start`")
            }
            None => Status::invalid_argument(
                "request: a PortForward message after `start` carries `data` or `close_write`",
            ),
        },
        Ok(None) => return None,
        // The caller's stream broke: its answer goes nowhere either.
        Err(_) => return None,
    };
    let _ = inbound.refuse.send((refusal, inbound.requests));
    None
}

/// What ended one wait of [`next_outbound`].
enum Woke {
    Stopping,
    Refused(Option<Refusal>),
    Answer(Option<crate::error::Result<pb::PortForwardResponse>>),
}

async fn next_outbound(
    mut outbound: Outbound,
) -> Option<(Result<pb::PortForwardResponse, Status>, Outbound)> {
    if outbound.ended {
        return None;
    }
    loop {
        let woke = {
            let refused = &mut outbound.refused;
            let refusal = async {
                match refused.as_mut() {
                    Some(refused) => refused.await.ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = outbound.stopping.as_mut() => Woke::Stopping,
                refusal = refusal => Woke::Refused(refusal),
                answer = outbound.responses.next() => Woke::Answer(answer),
            }
        };
        let answer = match woke {
            Woke::Stopping => Err(Status::unavailable(format!(
                "the server is shutting down; the connection to port {} in the sandbox ends: \
                 connect again through another server, or this one once it is back",
                outbound.port
            ))),
            Woke::Refused(Some((status, requests))) => {
                outbound.held_requests = Some(requests);
                Err(status)
            }
            // The caller finished sending; keep relaying answers.
            Woke::Refused(None) => {
                outbound.refused = None;
                continue;
            }
            Woke::Answer(None) => return None,
            Woke::Answer(Some(answer)) => answer.map_err(Status::from),
        };
        return match answer {
            Ok(message) => {
                if let Some(pb::port_forward_response::Response::Data(data)) = &message.response {
                    outbound
                        .manager
                        .metrics()
                        .bytes_moved(Direction::ForwardOut, data.len() as u64);
                    note_activity(&outbound.manager, &outbound.sandbox_id).await;
                }
                Some((Ok(message), outbound))
            }
            Err(status) => {
                outbound.ended = true;
                Some((Err(status), outbound))
            }
        };
    }
}

/// Bytes moving through a forward keep its sandbox from idling out.
async fn note_activity(manager: &Manager, sandbox_id: &str) {
    if let Err(error) = manager.note_activity(sandbox_id).await {
        tracing::warn!(%sandbox_id, %error, "cannot note activity");
    }
}

#[tonic::async_trait]
impl PortService for PortApi {
    type PortForwardStream = ForwardStream;

    async fn port_forward(
        &self,
        request: Request<Streaming<pb::PortForwardRequest>>,
    ) -> Result<Response<ForwardStream>, Status> {
        let caller = caller_of(&request);
        let mut requests = request.into_inner();
        let first = tokio::time::timeout(FIRST_MESSAGE_DEADLINE, requests.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no `start` message arrived within 30s"))??;
        let Some(pb::port_forward_request::Request::Start(start)) =
            first.and_then(|first| first.request)
        else {
            return Err(Status::invalid_argument(
                "request: the first PortForward message must be `start` (sandbox_id and port)",
            ));
        };
        let entry = audit::Entry::new(&caller, &start);
        let outcome = async {
            let target = rules::forward_start(start)?;
            let agent = self
                .manager
                .agent(&caller.tenant, &target.sandbox_id)
                .await?;
            let (refuse, refused) = oneshot::channel();
            let first = pb::PortForwardRequest {
                request: Some(pb::port_forward_request::Request::Start(
                    pb::PortForwardStart {
                        sandbox_id: target.sandbox_id.clone(),
                        port: u32::from(target.port),
                        address: target.address,
                    },
                )),
            };
            let inbound = Inbound {
                requests,
                refuse,
                manager: self.manager.clone(),
                sandbox_id: target.sandbox_id.clone(),
            };
            let to_agent = futures::stream::iter([first])
                .chain(futures::stream::unfold(inbound, next_inbound));
            let responses = agent.port_forward(to_agent).await?;
            let outbound = Outbound {
                responses,
                refused: Some(refused),
                held_requests: None,
                stopping: Box::pin(shutdown_begun(self.shutdown.clone())),
                manager: self.manager.clone(),
                sandbox_id: target.sandbox_id,
                port: target.port,
                ended: false,
            };
            let stream: ForwardStream = Box::pin(futures::stream::unfold(outbound, next_outbound));
            Ok::<_, Error>(Response::new(stream))
        }
        .await;
        entry.record(outcome.map_err(Status::from))
    }

    async fn expose_port(
        &self,
        request: Request<pb::ExposePortRequest>,
    ) -> Result<Response<pb::ExposePortResponse>, Status> {
        audited(request, async |caller, request| {
            let (id, port) = rules::sandbox_port(request.sandbox_id, request.port)?;
            self.manager.expose_port(&caller.tenant, &id, port).await?;
            Ok(pb::ExposePortResponse {
                exposed_port: self.preview.urls.exposed(&id, &[port]).pop(),
            })
        })
        .await
    }

    async fn unexpose_port(
        &self,
        request: Request<pb::UnexposePortRequest>,
    ) -> Result<Response<pb::UnexposePortResponse>, Status> {
        audited(request, async |caller, request| {
            let (id, port) = rules::sandbox_port(request.sandbox_id, request.port)?;
            self.manager
                .unexpose_port(&caller.tenant, &id, port)
                .await?;
            Ok(pb::UnexposePortResponse {})
        })
        .await
    }

    async fn create_preview_url(
        &self,
        request: Request<pb::CreatePreviewUrlRequest>,
    ) -> Result<Response<pb::CreatePreviewUrlResponse>, Status> {
        audited(request, async |caller, request| {
            let (id, port, ttl) = rules::preview_request(request)?;
            if !self.preview.urls.enabled() {
                return Err(Error::failed_precondition(
                    "this server has no preview proxy: start it with --preview-listen ADDR \
                     (and --preview-domain for the name browsers reach it by)",
                ));
            }
            let sandbox = self.manager.get(&caller.tenant, &id).await?;
            sandbox.state.plan_update().map_err(|rule| {
                Error::failed_precondition(format!("sandbox {id} is {}; {rule}", sandbox.state))
            })?;
            let expires_at = clock::now() + ttl;
            let token = self.preview.tokens.sign(&Grant {
                tenant: caller.tenant.clone(),
                sandbox_id: id.clone(),
                port,
                expires_at,
            });
            let with_token = |url: String| format!("{url}?{}={token}", super::preview::TOKEN_QUERY);
            Ok(pb::CreatePreviewUrlResponse {
                url: with_token(self.preview.urls.by_host(&id, port)),
                path_url: with_token(self.preview.urls.by_path(&id, port)),
                token: token.clone(),
                expire_time: Some(expires_at.into()),
            })
        })
        .await
    }
}
