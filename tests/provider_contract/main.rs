//! The `Provider` contract: one suite over `Arc<dyn Provider>` that asserts
//! each sentence of the trait's documentation (src/provider/mod.rs), run
//! against the process provider and against the real Docker engine. A new
//! provider gets a [`Subject`] and runs it too.

#[path = "../common/mod.rs"]
mod common;

mod lifecycle;
mod observing;
mod preparing;

use std::sync::Arc;
use std::time::Duration;

use paddock::ErrorKind;
use paddock::agent_client::{AgentChannel, AgentClient};
use paddock::pb;
use paddock::provider::{
    AgentLaunch, AgentTransport, DockerProvider, DockerSettings, KubernetesProvider, Observed,
    ProcessProvider, Provider, ProvisionRequest,
};
use paddock::sandbox::{NetworkMode, SandboxSpec};

/// The tenant of every sandbox the suite makes.
const TENANT: &str = "contract";

/// Something done to the object of a sandbox id.
type ToObject = Box<dyn Fn(&str) + Send + Sync>;
/// Opens a provider.
type Opener = Box<dyn Fn() -> futures::future::BoxFuture<'static, Arc<dyn Provider>> + Send + Sync>;

/// A provider under test, with what the suite needs that the trait does not
/// say: how to make a half-made object, how to open the provider again over
/// the same objects, and how to change an object behind its back.
struct Subject {
    provider: Arc<dyn Provider>,
    /// Opens another instance over the same objects, as a restarted server
    /// does.
    reopen: Opener,
    /// Leaves what a crash in the middle of `create` leaves for a sandbox
    /// id; `None` for a provider whose create is one atomic step.
    half_make: Option<ToObject>,
    /// A spec that `prepare` refuses; `None` for a provider that accepts
    /// every spec as it is.
    unpreparable: Option<SandboxSpec>,
    /// Stops an object without the provider (its init killed), and removes
    /// one, for providers that observe; `None` for the others.
    behind_its_back: Option<BehindItsBack>,
    _cleanup: Box<dyn Send + Sync>,
}

/// Changes made to objects without the provider.
struct BehindItsBack {
    stop: ToObject,
    remove: ToObject,
}

/// The process provider over a directory of its own.
async fn process() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sandboxes");
    let launch = AgentLaunch {
        binary: env!("CARGO_BIN_EXE_paddock").into(),
        max_commands: 16,
        output_budget: 8 << 20,
    };
    let open = {
        let root = root.clone();
        move || {
            let root = root.clone();
            let launch = launch.clone();
            Box::pin(async move {
                Arc::new(ProcessProvider::open(root, launch).await.unwrap()) as Arc<dyn Provider>
            }) as futures::future::BoxFuture<'static, _>
        }
    };
    let provider = open().await;
    let staging = root.clone();
    Subject {
        provider,
        reopen: Box::new(open),
        half_make: Some(Box::new(move |id: &str| {
            // A create cut short before its final rename.
            let partial = staging.join(format!(".creating-{id}"));
            std::fs::create_dir_all(partial.join("rootfs/workspace")).unwrap();
        })),
        unpreparable: None,
        behind_its_back: None,
        _cleanup: Box::new(KillAgents(dir)),
    }
}

/// Kills the agents the process provider started, and removes its directory.
struct KillAgents(tempfile::TempDir);

impl Drop for KillAgents {
    fn drop(&mut self) {
        common::kill_agents(self.0.path());
    }
}

/// The Docker provider on the test engine, its objects under a scope of
/// their own; `None` when Docker tests cannot run here (outside CI).
async fn docker() -> Option<Subject> {
    if !common::docker::available() {
        return None;
    }
    let scope = format!("contract-{}", uuid::Uuid::now_v7().simple());
    let settings = DockerSettings {
        host: None,
        tls_dir: None,
        default_image: Some(common::docker::BUSYBOX.into()),
        pull_timeout: Duration::from_secs(60),
        agent: AgentLaunch {
            binary: common::docker::agent_binary(),
            max_commands: 16,
            output_budget: 8 << 20,
        },
        scope: scope.clone(),
        transport: AgentTransport::Auto,
        egress_blocked: paddock::sandbox::network::Ipv4Cidr::default_egress_blocked(),
        allow_list_dns: Vec::new(),
        runtime: common::docker::runtime(),
        runtimes: Vec::new(),
    };
    let open = move || {
        let settings = settings.clone();
        Box::pin(async move { DockerProvider::open(settings).await.unwrap() as Arc<dyn Provider> })
            as futures::future::BoxFuture<'static, _>
    };
    let provider = open().await;
    let container = |id: &str| format!("paddock-{id}");
    Some(Subject {
        provider,
        reopen: Box::new(open),
        half_make: None,
        unpreparable: Some(SandboxSpec {
            // A registry that refuses connections: the pull fails at once.
            image: Some("127.0.0.1:9/paddock-test/missing:1".into()),
            workdir: "/workspace".into(),
            ..SandboxSpec::default()
        }),
        behind_its_back: Some(BehindItsBack {
            stop: Box::new(move |id| assert!(common::docker::docker(&["kill", &container(id)]))),
            remove: Box::new(move |id| {
                assert!(common::docker::docker(&["rm", "-f", &container(id)]))
            }),
        }),
        _cleanup: Box::new(common::docker::RemoveContainers(scope)),
    })
}

/// The Kubernetes provider on the test API server (a test double backing
/// pods with containers on the test engine), its objects under a scope of
/// their own; `None` when it cannot run here (outside CI).
async fn kubernetes() -> Option<Subject> {
    let api = common::kube::KubeApi::start()?;
    let scope = format!("contract-{}", uuid::Uuid::now_v7().simple());
    let settings = common::kube::settings(api.kubeconfig.clone(), &scope, &api.agent_image);
    let open = move || {
        let settings = settings.clone();
        Box::pin(
            async move { KubernetesProvider::open(settings).await.unwrap() as Arc<dyn Provider> },
        ) as futures::future::BoxFuture<'static, _>
    };
    let provider = open().await;
    let api = Arc::new(api);
    let (stopper, remover) = (api.clone(), api.clone());
    Some(Subject {
        provider,
        reopen: Box::new(open),
        half_make: None,
        unpreparable: Some(SandboxSpec {
            network: NetworkMode::AllowList,
            allowed_hosts: vec!["pypi.org".into()],
            workdir: "/workspace".into(),
            ..SandboxSpec::default()
        }),
        behind_its_back: Some(BehindItsBack {
            // The sandbox container killed, as the kernel's OOM killer or a
            // node problem would.
            stop: Box::new(move |id| {
                assert!(common::docker::docker(&["kill", &stopper.container_of(id)]))
            }),
            // Its pod and Secret deleted, as `kubectl delete` would.
            remove: Box::new(move |id| {
                let name = format!("paddock-{}", id.replace('_', "-"));
                let namespace = common::kube::NAMESPACE;
                remover.delete(&format!("/api/v1/namespaces/{namespace}/secrets/{name}"));
                remover.delete(&format!("/api/v1/namespaces/{namespace}/pods/{name}"));
            }),
        }),
        _cleanup: Box::new(api),
    })
}

/// Runs each `async fn NAME(subject: Subject)` listed against every
/// provider: `process::NAME`, `docker::NAME` and `kubernetes::NAME`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod process {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::process().await).await
                }
            )*
        }
        mod docker {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(subject) = crate::docker().await {
                        super::$name(subject).await
                    }
                }
            )*
        }
        mod kubernetes {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(subject) = crate::kubernetes().await {
                        super::$name(subject).await
                    }
                }
            )*
        }
    };
}
pub(crate) use contract;

impl Subject {
    /// A spec the provider accepts, completed by its `prepare`.
    async fn spec(&self) -> SandboxSpec {
        let caps = self.provider.capabilities();
        let mut spec = SandboxSpec {
            workdir: "/workspace".into(),
            // The strictest network the provider enforces, as the manager
            // picks it for a request that names none.
            network: if caps.network_egress {
                NetworkMode::Egress
            } else if caps.network_none {
                NetworkMode::None
            } else {
                NetworkMode::Bridge
            },
            ..SandboxSpec::default()
        };
        self.provider.prepare(&mut spec).await.unwrap();
        spec
    }

    /// Creates the object of a new sandbox; returns its id and reference.
    async fn create(&self) -> (String, String) {
        let id = paddock::ids::new_sandbox_id();
        let spec = self.spec().await;
        let reference = self
            .provider
            .create(ProvisionRequest {
                sandbox_id: &id,
                tenant: TENANT,
                spec: &spec,
            })
            .await
            .unwrap();
        (id, reference)
    }

    /// Creates and starts a new sandbox; returns its id and its agent.
    async fn running(&self) -> (String, AgentClient) {
        let (id, _) = self.create().await;
        let channel = self.provider.start(&id).await.unwrap();
        (id, AgentClient::new(channel))
    }

    /// What the provider sees of `id`.
    async fn inspect(&self, id: &str) -> Option<Observed> {
        self.provider.inspect(id).await.unwrap()
    }

    /// The ids of every object `list` returns.
    async fn listed(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .provider
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|observed| observed.sandbox_id)
            .collect();
        ids.sort();
        ids
    }
}

/// Starts a command in the sandbox that runs until it is killed.
async fn long_command(agent: &AgentClient, id: &str) -> String {
    agent
        .start_command(pb::StartCommandRequest {
            sandbox_id: id.to_owned(),
            spec: Some(pb::CommandSpec {
                command: vec!["sleep".into(), "600".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .command
        .unwrap()
        .id
}

/// The state of command `command_id`, as the agent tells it.
async fn command_state(agent: &AgentClient, id: &str, command_id: &str) -> pb::CommandState {
    let command = agent
        .get_command(pb::GetCommandRequest {
            sandbox_id: id.to_owned(),
            command_id: command_id.to_owned(),
        })
        .await
        .unwrap()
        .command
        .unwrap();
    pb::CommandState::try_from(command.state).unwrap()
}

/// Whether a call through `channel` fails the way an unreachable agent's
/// does.
async fn unreachable(channel: AgentChannel, id: &str) -> bool {
    let answered = tokio::time::timeout(
        Duration::from_secs(30),
        AgentClient::new(channel).answers(id),
    )
    .await
    .expect("a call to an unreachable agent fails, not hangs");
    answered.is_err_and(|error| error.kind() == ErrorKind::Unavailable)
}
