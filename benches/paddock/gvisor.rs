//! What gVisor costs: the same Paddock operations on Docker sandboxes under
//! `runsc` next to the same under `runc`, on one server. The "floor" here is
//! runc, so each ratio is gVisor's price; there is no goal to meet.

use bollard::Docker;
use paddock::pb;

use crate::engine::{IMAGE, settle};
use crate::ops::Clients;
use crate::report::{Measured, Row, Stats};
use crate::server::ServerProcess;
use crate::{Plan, side_by_side, skip, timed};

const SECTION: &str = "gVisor (runsc) next to runc (the \"floor\" is the same operation under runc, same server and image)";

/// The upload the issue of record asks about.
const UPLOAD_BYTES: u64 = 64 << 20;

fn request(runtime: &str) -> pb::CreateSandboxRequest {
    pb::CreateSandboxRequest {
        image: IMAGE.into(),
        runtime: runtime.into(),
        ..Default::default()
    }
}

fn row(operation: &str, runsc: Measured, runc: Measured) -> Row {
    Row {
        section: SECTION.to_owned(),
        operation: operation.to_owned(),
        paddock: runsc,
        floor: Some(("the same under runc".to_owned(), runc)),
        goal: None,
    }
}

/// Whether the engine has the runtime `runsc` registered.
async fn has_runsc(docker: &Docker) -> bool {
    docker
        .info()
        .await
        .ok()
        .and_then(|info| info.runtimes)
        .is_some_and(|runtimes| runtimes.contains_key("runsc"))
}

pub async fn run(plan: &Plan, docker: &Docker) -> Vec<Row> {
    if !has_runsc(docker).await {
        skip(
            "gvisor",
            "the engine has no runtime named runsc (scripts/test registers it)",
        );
        return Vec::new();
    }
    println!("gvisor: measuring");
    let server = ServerProcess::start_with("docker", "auto", &["--docker-runtimes", "runsc"]);
    let clients = Clients::new(server.connect().await);
    let mut rows = Vec::new();

    let create = |runtime: &'static str| {
        let mut c = clients.clone();
        async move {
            let (took, id) = timed(c.create(request(runtime))).await;
            c.delete(&id).await;
            took
        }
    };
    let (runsc, runc) = side_by_side(
        plan.create_rounds,
        1,
        || create("runsc"),
        || create("runc"),
        settle,
    )
    .await;
    rows.push(row(
        "create → RUNNING",
        Measured::Latency(Stats::of(&runsc)),
        Measured::Latency(Stats::of(&runc)),
    ));

    let on_runsc = clients.clone().create(request("runsc")).await;
    let on_runc = clients.clone().create(request("runc")).await;
    let run_true = |id: &str| {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move {
            c.run(&id, &["true"]).await;
        }
    };
    let (runsc, runc) = side_by_side(
        plan.rounds,
        3,
        || run_true(&on_runsc),
        || run_true(&on_runc),
        crate::no_pause,
    )
    .await;
    rows.push(row(
        "`RunCommand` of `true`",
        Measured::Latency(Stats::of(&runsc)),
        Measured::Latency(Stats::of(&runc)),
    ));

    let bytes = UPLOAD_BYTES.min(plan.file_bytes.max(8 << 20));
    let upload = |id: &str| {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move { c.upload(&id, "/tmp/big", bytes).await }
    };
    let (runsc, runc) = side_by_side(
        plan.transfer_rounds,
        1,
        || upload(&on_runsc),
        || upload(&on_runc),
        crate::no_pause,
    )
    .await;
    rows.push(row(
        &format!("`Upload` of {}", Plan::mib(bytes)),
        Measured::Transfer {
            time: Stats::of(&runsc),
            bytes,
        },
        Measured::Transfer {
            time: Stats::of(&runc),
            bytes,
        },
    ));
    for id in [&on_runsc, &on_runc] {
        clients.clone().delete(id).await;
    }
    server.stop().await;
    rows
}
