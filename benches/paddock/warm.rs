//! Warm pools: create → first output of `echo hi` from a template keeping
//! five Docker sandboxes warm, beside a cold create of the same image and
//! the engine's create + start + exec.

use std::time::Duration;

use bollard::Docker;
use paddock::pb;
use paddock::pb::template_service_client::TemplateServiceClient;
use tonic::transport::Channel;

use crate::engine::{self, IMAGE, settle};
use crate::ops::Clients;
use crate::report::{Goal, Measured, Row, Stats};
use crate::server::ServerProcess;
use crate::{Plan, side_by_side, timed};

const SECTION: &str = "Warm pools (Docker; floor: the Docker Engine API's create + start + exec, same engine, image and network)";

/// The pool the benchmark's template keeps.
const POOL: u32 = 5;

fn row(operation: &str, ours: &[Duration], theirs: &[Duration], goal: Option<Goal>) -> Row {
    Row {
        section: SECTION.to_owned(),
        operation: operation.to_owned(),
        paddock: Measured::Latency(Stats::of(ours)),
        floor: Some((
            "create + start + exec".to_owned(),
            Measured::Latency(Stats::of(theirs)),
        )),
        goal,
    }
}

/// Waits (untimed) until the template's pool is full again.
async fn refilled(templates: &mut TemplateServiceClient<Channel>) {
    for _ in 0..600 {
        let pool = templates
            .get_template(pb::GetTemplateRequest {
                name: "bench-warm".into(),
            })
            .await
            .expect("GetTemplate")
            .into_inner()
            .template
            .and_then(|t| t.warm_pool)
            .expect("the template shows its pool");
        if pool.ready == POOL && pool.starting == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the warm pool did not refill within 30s");
}

pub async fn run(plan: &Plan, docker: &Docker) -> Vec<Row> {
    println!("warm pools: measuring");
    let server = ServerProcess::start("docker", "auto");
    let channel = server.connect().await;
    let clients = Clients::new(channel.clone());
    let mut templates = TemplateServiceClient::new(channel);
    templates
        .create_template(pb::CreateTemplateRequest {
            name: "bench-warm".into(),
            spec: Some(pb::TemplateSpec {
                image: IMAGE.into(),
                warm_pool_size: POOL,
                ..Default::default()
            }),
        })
        .await
        .expect("CreateTemplate");
    refilled(&mut templates).await;
    let network = {
        let mut c = clients.clone();
        let id = c
            .create(pb::CreateSandboxRequest {
                image: IMAGE.into(),
                ..Default::default()
            })
            .await;
        let network = engine::network_of(docker, &format!("paddock-{id}")).await;
        c.delete(&id).await;
        network
    };
    let network = network.as_str();
    let first_output = |request: pb::CreateSandboxRequest, warm: bool| {
        let mut c = clients.clone();
        let mut templates = templates.clone();
        async move {
            let (took, id) = timed(async {
                let id = c.create(request).await;
                assert_eq!(&c.run(&id, &["echo", "hi"]).await[..], b"hi\n");
                id
            })
            .await;
            c.delete(&id).await;
            if warm {
                refilled(&mut templates).await;
            }
            took
        }
    };
    let floor = || engine::first_output(docker, network);
    let warm = pb::CreateSandboxRequest {
        template: "bench-warm".into(),
        ..Default::default()
    };
    let (ours, theirs) = side_by_side(
        plan.create_rounds,
        1,
        || first_output(warm.clone(), true),
        floor,
        settle,
    )
    .await;
    let mut rows = vec![row(
        "warm create (pool of 5) → first output of `echo hi`",
        &ours,
        &theirs,
        Some(Goal::MedianUnder(Duration::from_millis(15))),
    )];
    let cold = pb::CreateSandboxRequest {
        image: IMAGE.into(),
        ..Default::default()
    };
    let (ours, theirs) = side_by_side(
        plan.create_rounds,
        1,
        || first_output(cold.clone(), false),
        floor,
        settle,
    )
    .await;
    rows.push(row(
        "cold create → first output of `echo hi`",
        &ours,
        &theirs,
        None,
    ));
    templates
        .delete_template(pb::DeleteTemplateRequest {
            name: "bench-warm".into(),
            force: true,
        })
        .await
        .expect("DeleteTemplate");
    server.stop().await;
    rows
}
