//! Request rates of the record-reading calls, and the server's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use paddock::pb;

use crate::Plan;
use crate::engine::{self, IMAGE};
use crate::ops::Clients;
use crate::report::{Goal, Measured, Row};
use crate::server::ServerProcess;

/// Sandboxes in the store while rates are measured (one page of listing).
const SANDBOXES: usize = 10;

/// `callers` tasks calling `call` back to back for `window` (after a warm
/// up of a fifth of it); returns the calls per second they completed.
async fn rate<F, Fut>(callers: usize, window: Duration, call: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let done = Arc::new(AtomicU64::new(0));
    let warm_until = Instant::now() + window / 5;
    let until = warm_until + window;
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (call, done) = (call.clone(), done.clone());
            tokio::spawn(async move {
                loop {
                    call(caller).await;
                    let now = Instant::now();
                    if now >= until {
                        break;
                    }
                    if now >= warm_until {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    done.load(Ordering::Relaxed) as f64 / window.as_secs_f64()
}

fn provider(docker: bool) -> &'static str {
    if docker { "docker" } else { "process" }
}

fn sandbox_request(docker: bool) -> pb::CreateSandboxRequest {
    pb::CreateSandboxRequest {
        image: if docker { IMAGE.into() } else { String::new() },
        ..Default::default()
    }
}

/// `GetSandbox` and `ListSandboxes` per second at `plan.callers` callers,
/// each on its own connection, with the engine's inspect and list at the
/// same concurrency as the floor when there is an engine.
pub async fn rates(plan: &Plan, docker: Option<&Docker>) -> Vec<Row> {
    let section = format!(
        "API requests per second ({} callers, each on its own connection; SQLite store; floor: the engine's inspect and list)",
        plan.callers
    );
    println!("api: measuring");
    let server = ServerProcess::start(provider(docker.is_some()), "auto");
    let mut clients = Clients::new(server.connect().await);
    let mut ids = Vec::new();
    for _ in 0..SANDBOXES {
        ids.push(clients.create(sandbox_request(docker.is_some())).await);
    }
    let mut callers = Vec::new();
    for _ in 0..plan.callers {
        callers.push(Clients::new(server.connect().await));
    }
    let callers = Arc::new(callers);
    let target = ids[0].clone();

    let get = {
        let (callers, target) = (callers.clone(), target.clone());
        move |caller: usize| {
            let mut c = callers[caller].clone();
            let target = target.clone();
            async move {
                let got = c
                    .sandboxes
                    .get_sandbox(pb::GetSandboxRequest { sandbox_id: target })
                    .await
                    .expect("GetSandbox");
                assert!(got.into_inner().sandbox.is_some());
            }
        }
    };
    let get_rate = rate(plan.callers, plan.rate_window, get).await;
    let list = {
        let callers = callers.clone();
        move |caller: usize| {
            let mut c = callers[caller].clone();
            async move {
                let listed = c
                    .sandboxes
                    .list_sandboxes(pb::ListSandboxesRequest::default())
                    .await
                    .expect("ListSandboxes");
                assert_eq!(listed.into_inner().sandboxes.len(), SANDBOXES);
            }
        }
    };
    let list_rate = rate(plan.callers, plan.rate_window, list).await;

    let keyed_get_rate = keyed_get_rate(plan, docker.is_some()).await;

    let (inspect_rate, engine_list_rate) = match docker {
        Some(docker) => {
            let container = format!("paddock-{target}");
            let inspect = {
                let docker = docker.clone();
                move |_| {
                    let (docker, container) = (docker.clone(), container.clone());
                    async move { engine::inspect(&docker, &container).await }
                }
            };
            let inspected = rate(plan.callers, plan.rate_window, inspect).await;
            let list = {
                let docker = docker.clone();
                move |_| {
                    let docker = docker.clone();
                    async move {
                        assert!(engine::list(&docker).await >= SANDBOXES);
                    }
                }
            };
            let listed = rate(plan.callers, plan.rate_window, list).await;
            (Some(inspected), Some(listed))
        }
        None => (None, None),
    };
    server.stop().await;
    vec![
        Row {
            section: section.clone(),
            operation: "`GetSandbox`".into(),
            paddock: Measured::Rate(get_rate),
            floor: inspect_rate.map(|r| ("`GET /containers/{id}/json`".into(), Measured::Rate(r))),
            goal: Some(Goal::RateAtLeast(15_000.0)),
        },
        Row {
            section: section.clone(),
            operation: "`GetSandbox` with an API key".into(),
            paddock: Measured::Rate(keyed_get_rate),
            floor: inspect_rate.map(|r| ("`GET /containers/{id}/json`".into(), Measured::Rate(r))),
            goal: None,
        },
        Row {
            section,
            operation: format!("`ListSandboxes` ({SANDBOXES} sandboxes)"),
            paddock: Measured::Rate(list_rate),
            floor: engine_list_rate
                .map(|r| ("`GET /containers/json?all=1`".into(), Measured::Rate(r))),
            goal: None,
        },
    ]
}

/// `GetSandbox` per second through a server that requires API keys (no
/// rate limit, so that the lookup is what is measured), every caller with
/// the same key.
async fn keyed_get_rate(plan: &Plan, docker: bool) -> f64 {
    let mut server = ServerProcess::start_with(
        provider(docker),
        "auto",
        &["--auth", "keys", "--key-rate-limit", "0"],
    );
    let header: tonic::metadata::MetadataValue<_> = format!("Bearer {}", server.make_key("bench"))
        .parse()
        .expect("a header value");
    let with_key = move |mut request: tonic::Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", header.clone());
        Ok(request)
    };
    let mut callers = Vec::new();
    for _ in 0..plan.callers {
        callers.push(
            pb::sandbox_service_client::SandboxServiceClient::with_interceptor(
                server.connect().await,
                with_key.clone(),
            ),
        );
    }
    let target = callers[0]
        .create_sandbox(sandbox_request(docker))
        .await
        .expect("CreateSandbox with a key")
        .into_inner()
        .sandbox
        .expect("a sandbox")
        .id;
    let callers = Arc::new(callers);
    let get = move |caller: usize| {
        let mut c = callers[caller].clone();
        let target = target.clone();
        async move {
            let got = c
                .get_sandbox(pb::GetSandboxRequest { sandbox_id: target })
                .await
                .expect("GetSandbox with a key");
            assert!(got.into_inner().sandbox.is_some());
        }
    };
    let rate = rate(plan.callers, plan.rate_window, get).await;
    server.stop().await;
    rate
}

/// The server's resident memory idle, and what each idle Exec stream adds.
pub async fn memory(plan: &Plan, docker: bool) -> Vec<Row> {
    let section = format!(
        "Server memory ({} provider; resident set of the `paddock serve` process)",
        provider(docker)
    );
    println!("memory: measuring");
    let server = ServerProcess::start(provider(docker), "auto");
    let mut clients = Clients::new(server.connect().await);
    let id = clients.create(sandbox_request(docker)).await;
    for _ in 0..10 {
        clients.run(&id, &["true"]).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server.rss();

    // Streams spread over connections of 100 each, as many clients would.
    let n = plan.idle_streams;
    let mut streams = Vec::with_capacity(n);
    let mut connection = clients.clone();
    for i in 0..n {
        if i % 100 == 0 {
            connection = Clients::new(server.connect().await);
        }
        streams.push(connection.idle_stream(&id).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let open = server.rss();
    let per_stream = open.saturating_sub(idle) / n as u64;
    drop(streams);
    server.stop().await;
    vec![
        Row {
            section: section.clone(),
            operation: "idle, one sandbox".into(),
            paddock: Measured::Memory(idle),
            floor: None,
            goal: Some(Goal::MemoryUnder(64 << 20)),
        },
        Row {
            section: section.clone(),
            operation: format!("with {n} idle `Exec` streams of `cat` open"),
            paddock: Measured::Memory(open),
            floor: None,
            goal: None,
        },
        Row {
            section,
            operation: "each idle `Exec` stream".into(),
            paddock: Measured::Memory(per_stream),
            floor: None,
            goal: Some(Goal::MemoryUnder(64 << 10)),
        },
    ]
}
