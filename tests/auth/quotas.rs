//! Quotas per tenant refuse what is over them, name the quota, and leave
//! nothing behind.

use super::*;

/// A keyed server with quotas from a configuration file: every tenant may
/// run 2 sandboxes and 1 command, with sandboxes of at most 64 MiB; tenant
/// `big` may run 3 sandboxes.
async fn server_with_quotas(store: Store) -> Option<TestServer> {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "auth = \"keys\"\n\
         quota_running_sandboxes = 2\n\
         quota_commands = 1\n\
         quota_max_memory = \"64MiB\"\n\
         [tenant_quotas.big]\n\
         quota_running_sandboxes = 3\n",
    )
    .unwrap();
    let path = config.path().to_path_buf();
    let server = TestServer::on(store, |args: &mut ServeArgs| args.config = Some(path)).await;
    drop(config);
    server
}

async fn create(clients: &mut Clients) -> Result<pb::Sandbox, Status> {
    Ok(clients
        .sandboxes
        .create_sandbox(pb::CreateSandboxRequest::default())
        .await?
        .into_inner()
        .sandbox
        .unwrap())
}

async fn quotas_refuse_what_is_over_them_and_name_the_quota(store: Store) {
    let Some(server) = server_with_quotas(store).await else {
        return;
    };
    let mut small = clients(&server, Some(&make_key(&server, "small"))).await;
    let mut big = clients(&server, Some(&make_key(&server, "big"))).await;

    let first = create(&mut small).await.unwrap();
    create(&mut small).await.unwrap();
    assert_refused(
        create(&mut small).await,
        Code::ResourceExhausted,
        "a third sandbox",
        "running_sandboxes (2)",
    );
    let listed = small
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.sandboxes.len(), 2, "a refused create leaves nothing");
    for _ in 0..3 {
        create(&mut big).await.expect("big's own quota is 3");
    }
    assert_code(
        create(&mut big).await,
        Code::ResourceExhausted,
        "big's fourth",
    );

    // A stopped sandbox does not count, and starting it again does.
    small
        .sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            sandbox_id: first.id.clone(),
        })
        .await
        .unwrap();
    create(&mut small).await.expect("room after a stop");
    assert_code(
        small
            .sandboxes
            .start_sandbox(pb::StartSandboxRequest {
                sandbox_id: first.id.clone(),
            })
            .await,
        Code::ResourceExhausted,
        "starting a third",
    );

    assert_refused(
        small
            .sandboxes
            .create_sandbox(pb::CreateSandboxRequest {
                resources: Some(pb::Resources {
                    memory_bytes: 128 << 20,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await,
        Code::ResourceExhausted,
        "128 MiB",
        "max_memory_bytes",
    );

    // One command at a time for each tenant: an open Exec holds the place.
    let running = big
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandboxes[0]
        .id
        .clone();
    let (hold, held) = tokio::sync::mpsc::channel(1);
    hold.send(pb::ExecRequest {
        request: Some(pb::exec_request::Request::Start(pb::ExecStart {
            sandbox_id: running.clone(),
            spec: Some(pb::CommandSpec {
                command: vec!["cat".into()],
                ..Default::default()
            }),
            on_disconnect: 0,
        })),
    })
    .await
    .unwrap();
    let mut open = big
        .exec
        .exec(tokio_stream::wrappers::ReceiverStream::new(held))
        .await
        .unwrap()
        .into_inner();
    open.message().await.unwrap().expect("started");
    let run = pb::RunCommandRequest {
        sandbox_id: running.clone(),
        spec: Some(pb::CommandSpec {
            command: vec!["true".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_refused(
        big.exec.run_command(run.clone()).await,
        Code::ResourceExhausted,
        "a second command",
        "quota commands",
    );
    hold.send(pb::ExecRequest {
        request: Some(pb::exec_request::Request::CloseStdin(pb::CloseStdin {})),
    })
    .await
    .unwrap();
    while open.message().await.unwrap().is_some() {}
    drop(hold);
    drop(open);
    common::eventually(Duration::from_secs(5), "the place is free again", || {
        let mut exec = big.exec.clone();
        let run = run.clone();
        async move { exec.run_command(run).await.ok() }
    })
    .await;
}

on_every_store!(quotas_refuse_what_is_over_them_and_name_the_quota);
