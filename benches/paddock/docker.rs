//! The Docker provider next to the Docker Engine API driven directly.

use bollard::Docker;
use bytes::Bytes;
use paddock::pb;

use crate::engine::{self, IMAGE, settle};
use crate::ops::{Clients, StdinFeed, stdout_command};
use crate::report::{Goal, Measured, Row, Stats};
use crate::server::ServerProcess;
use crate::{Plan, after_idle, side_by_side, timed};

const SECTION: &str = "Docker provider (floor: the Docker Engine API through bollard, same engine, image and container)";

const SMALL_FILE: &[u8] = b"a small file of the kind agents read and write all day\n";

fn row(operation: String, paddock: Measured, floor: String, measured: Measured, goal: Goal) -> Row {
    Row {
        section: SECTION.to_owned(),
        operation,
        paddock,
        floor: Some((floor, measured)),
        goal: Some(goal),
    }
}

fn latency(
    operation: impl Into<String>,
    ours: &[std::time::Duration],
    floor: impl Into<String>,
    theirs: &[std::time::Duration],
    goal: Goal,
) -> Row {
    row(
        operation.into(),
        Measured::Latency(Stats::of(ours)),
        floor.into(),
        Measured::Latency(Stats::of(theirs)),
        goal,
    )
}

fn transfer(
    operation: impl Into<String>,
    ours: &[std::time::Duration],
    floor: impl Into<String>,
    theirs: &[std::time::Duration],
    bytes: u64,
) -> Row {
    row(
        operation.into(),
        Measured::Transfer {
            time: Stats::of(ours),
            bytes,
        },
        floor.into(),
        Measured::Transfer {
            time: Stats::of(theirs),
            bytes,
        },
        Goal::ThroughputAtLeast(0.90),
    )
}

fn image_request() -> pb::CreateSandboxRequest {
    pb::CreateSandboxRequest {
        image: IMAGE.into(),
        ..Default::default()
    }
}

pub async fn run(plan: &Plan, docker: &Docker) -> Vec<Row> {
    println!("docker provider: measuring");
    let server = ServerProcess::start("docker", "auto");
    let clients = Clients::new(server.connect().await);
    let mut rows = Vec::new();
    rows.extend(sandboxes(plan, docker, &clients).await);

    let id = clients.clone().create(image_request()).await;
    let container = format!("paddock-{id}");
    rows.extend(exec(plan, docker, &clients, &id, &container, "").await);
    rows.extend(streams(plan, docker, &clients, &id, &container).await);
    rows.extend(files(plan, docker, &clients, &id, &container).await);
    rows.extend(crate::python::run(plan, &server, &id, &container));
    clients.clone().delete(&id).await;
    server.stop().await;

    // The exec bridge: what a remote engine gets, every byte through
    // dockerd and the container's exec pipes.
    let server = ServerProcess::start("docker", "bridge");
    let clients = Clients::new(server.connect().await);
    let id = clients.clone().create(image_request()).await;
    let container = format!("paddock-{id}");
    rows.extend(
        exec(
            plan,
            docker,
            &clients,
            &id,
            &container,
            " through the exec bridge",
        )
        .await,
    );
    clients.clone().delete(&id).await;
    server.stop().await;
    rows
}

/// Only the command rows of [`run`] (`scripts/bench docker-commands`): a
/// quick look while working on the command path.
pub async fn commands(plan: &Plan, docker: &Docker) -> Vec<Row> {
    println!("docker provider, commands only: measuring");
    let server = ServerProcess::start("docker", "auto");
    let clients = Clients::new(server.connect().await);
    let id = clients.clone().create(image_request()).await;
    let container = format!("paddock-{id}");
    let mut rows = exec(plan, docker, &clients, &id, &container, "").await;
    rows.extend(crate::python::run(plan, &server, &id, &container));
    clients.clone().delete(&id).await;
    server.stop().await;
    rows
}

/// Create → RUNNING and → first output, each sample removing what it made
/// (untimed) before the next.
async fn sandboxes(plan: &Plan, docker: &Docker, clients: &Clients) -> Vec<Row> {
    let create = || {
        let mut c = clients.clone();
        async move {
            let (took, id) = timed(c.create(image_request())).await;
            c.delete(&id).await;
            took
        }
    };
    // The floor's containers join the engine network Paddock's sandboxes
    // join (EGRESS's, by default): a user-defined network costs the engine
    // itself about 50 ms per start here (its embedded DNS), which is the
    // network mode's cost, not Paddock's.
    let network = {
        let mut c = clients.clone();
        let id = c.create(image_request()).await;
        let network = engine::network_of(docker, &format!("paddock-{id}")).await;
        c.delete(&id).await;
        network
    };
    let network = network.as_str();
    let raw_create = || async {
        let (took, name) = timed(engine::create_and_start(docker, network)).await;
        engine::remove(docker, &name).await;
        took
    };
    let (ours, theirs) = side_by_side(plan.create_rounds, 1, create, raw_create, settle).await;
    let mut rows = vec![latency(
        "create → RUNNING",
        &ours,
        "create + start",
        &theirs,
        Goal::TimeAtMost(1.10),
    )];

    let interactive = || {
        let mut c = clients.clone();
        async move {
            let (took, id) = timed(async {
                let id = c.create(image_request()).await;
                assert_eq!(&c.run(&id, &["echo", "hi"]).await[..], b"hi\n");
                id
            })
            .await;
            c.delete(&id).await;
            took
        }
    };
    let raw_interactive = || engine::first_output(docker, network);
    let (ours, theirs) =
        side_by_side(plan.create_rounds, 1, interactive, raw_interactive, settle).await;
    rows.push(latency(
        "create → first output of `echo hi`",
        &ours,
        "create + start + exec",
        &theirs,
        Goal::TimeAtMost(1.10),
    ));
    rows
}

async fn exec(
    plan: &Plan,
    docker: &Docker,
    clients: &Clients,
    id: &str,
    container: &str,
    how: &str,
) -> Vec<Row> {
    let raw_true = || async {
        engine::exec(docker, container, &["true"], None).await;
    };
    let run_true = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move {
            c.run(&id, &["true"]).await;
        }
    };
    let (ours, theirs) = side_by_side(plan.rounds, 3, run_true, raw_true, settle).await;
    // Direct to the agent's socket, a short command is meant to cost a
    // small fraction of what the engine's exec costs.
    let goal = if how.is_empty() {
        Goal::FasterBy(25.0)
    } else {
        Goal::FasterBy(10.0)
    };
    let mut rows = vec![latency(
        format!("`RunCommand` of `true`{how}"),
        &ours,
        "exec: create, start attached, read, inspect",
        &theirs,
        goal,
    )];
    if !how.is_empty() {
        return rows;
    }
    let exec_true = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move {
            c.exec(&id, &["true"], None).await;
        }
    };
    let (ours, theirs) = side_by_side(plan.rounds, 3, exec_true, raw_true, settle).await;
    rows.push(latency(
        "`Exec` of `true` (bidirectional stream)",
        &ours,
        "exec",
        &theirs,
        Goal::FasterBy(10.0),
    ));

    // As agents call: a pause before each call, so that what sleeps
    // between calls has to wake.
    let idle_run = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        after_idle(async move {
            c.run(&id, &["true"]).await;
        })
    };
    let idle_raw = || after_idle(engine::exec(docker, container, &["true"], None));
    let (ours, theirs) = side_by_side(plan.rounds, 3, idle_run, idle_raw, settle).await;
    rows.push(latency(
        "`RunCommand` of `true` after 50 ms idle",
        &ours,
        "exec after 50 ms idle",
        &theirs,
        Goal::FasterBy(10.0),
    ));
    let idle_exec = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        after_idle(async move {
            c.exec(&id, &["true"], None).await;
        })
    };
    let (ours, theirs) = side_by_side(plan.rounds, 3, idle_exec, idle_raw, settle).await;
    rows.push(latency(
        "`Exec` of `true` after 50 ms idle",
        &ours,
        "exec after 50 ms idle",
        &theirs,
        Goal::FasterBy(10.0),
    ));

    let n = plan.concurrent;
    let batch = || {
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let (mut c, id) = (clients.clone(), id.to_owned());
                async move { c.run(&id, &["true"]).await }
            })
            .collect();
        async move {
            futures::future::join_all(calls).await;
        }
    };
    let raw_batch = || async {
        futures::future::join_all((0..n).map(|_| engine::exec(docker, container, &["true"], None)))
            .await;
    };
    let (ours, theirs) = side_by_side(plan.batches, 1, batch, raw_batch, settle).await;
    rows.push(latency(
        format!("{n} concurrent `RunCommand`s of `true`, whole batch"),
        &ours,
        format!("{n} concurrent execs"),
        &theirs,
        Goal::FasterBy(10.0),
    ));
    rows
}

async fn streams(
    plan: &Plan,
    docker: &Docker,
    clients: &Clients,
    id: &str,
    container: &str,
) -> Vec<Row> {
    let bytes = plan.stdout_bytes;
    let command = stdout_command(bytes);
    let argv: &[&str] = &command.iter().map(String::as_str).collect::<Vec<_>>();
    let stdout = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move { assert_eq!(c.exec(&id, argv, None).await, bytes) }
    };
    let raw_stdout = || async move {
        assert_eq!(engine::exec(docker, container, argv, None).await, bytes);
    };
    let (ours, theirs) = side_by_side(plan.transfer_rounds, 1, stdout, raw_stdout, settle).await;
    let mut rows = vec![transfer(
        format!("stdout of a {} stream (`Exec`)", Plan::mib(bytes)),
        &ours,
        "exec attached",
        &theirs,
        bytes,
    )];

    let bytes = plan.stdin_bytes;
    let stdin = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move {
            let out = c.exec(&id, &["wc", "-c"], Some(StdinFeed(bytes))).await;
            assert_eq!(out, bytes.to_string().len() as u64 + 1);
        }
    };
    let raw_stdin = || engine::exec_stdin(docker, container, bytes);
    let (ours, theirs) = side_by_side(plan.transfer_rounds, 1, stdin, raw_stdin, settle).await;
    rows.push(transfer(
        format!("stdin of {} into `wc -c` (`Exec`)", Plan::mib(bytes)),
        &ours,
        "exec attached, stdin",
        &theirs,
        bytes,
    ));
    rows
}

async fn files(
    plan: &Plan,
    docker: &Docker,
    clients: &Clients,
    id: &str,
    container: &str,
) -> Vec<Row> {
    let small = "/tmp/small.txt";
    clients.clone().write_file(id, small, SMALL_FILE).await;
    let stat = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move { assert_eq!(c.stat(&id, small).await, SMALL_FILE.len() as u64) }
    };
    let raw_stat = || engine::stat(docker, container, small);
    let (ours, theirs) = side_by_side(plan.rounds, 3, stat, raw_stat, settle).await;
    let mut rows = vec![latency(
        "`Stat`",
        &ours,
        "`HEAD …/archive`",
        &theirs,
        Goal::FasterBy(10.0),
    )];

    let read = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move { assert_eq!(c.read_file(&id, small).await, SMALL_FILE) }
    };
    let raw_read = || async {
        let tar = engine::get_archive(docker, container, small).await;
        assert_eq!(engine::untar_one(&tar), SMALL_FILE);
    };
    let (ours, theirs) = side_by_side(plan.rounds, 3, read, raw_read, settle).await;
    rows.push(latency(
        format!("`ReadFile` of {} bytes", SMALL_FILE.len()),
        &ours,
        "`GET …/archive`, untarred",
        &theirs,
        Goal::FasterBy(10.0),
    ));

    let write = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move { c.write_file(&id, "/tmp/written.txt", SMALL_FILE).await }
    };
    let one_small = engine::tar_of_one_file("written-raw.txt", SMALL_FILE.len() as u64);
    let raw_write = || engine::put_archive(docker, container, "/tmp", one_small.clone());
    let (ours, theirs) = side_by_side(plan.rounds, 3, write, raw_write, settle).await;
    rows.push(latency(
        format!("`WriteFile` of {} bytes", SMALL_FILE.len()),
        &ours,
        "`PUT …/archive` of a tar of it",
        &theirs,
        Goal::FasterBy(10.0),
    ));

    // An agent's edit: write 4 KiB, read it back.
    let page = vec![b'p'; 4096];
    let pair = || {
        let (mut c, id, page) = (clients.clone(), id.to_owned(), page.clone());
        async move {
            c.write_file(&id, "/tmp/page.txt", &page).await;
            assert_eq!(c.read_file(&id, "/tmp/page.txt").await.len(), page.len());
        }
    };
    let page_tar = engine::tar_of_one_file("page-raw.txt", page.len() as u64);
    let raw_pair = || {
        let page_tar = page_tar.clone();
        async move {
            engine::put_archive(docker, container, "/tmp", page_tar).await;
            let tar = engine::get_archive(docker, container, "/tmp/page-raw.txt").await;
            assert_eq!(engine::untar_one(&tar).len(), 4096);
        }
    };
    let (ours, theirs) = side_by_side(plan.rounds, 3, pair, raw_pair, settle).await;
    rows.push(latency(
        "4 KiB `WriteFile` then `ReadFile`",
        &ours,
        "`PUT …/archive` then `GET …/archive`",
        &theirs,
        Goal::FasterBy(10.0),
    ));

    let bytes = plan.file_bytes;
    let big = engine::tar_of_one_file("big-raw", bytes);
    let upload = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move { c.upload(&id, "/tmp/big", bytes).await }
    };
    let raw_upload = || engine::put_archive(docker, container, "/tmp", big.clone());
    let (ours, theirs) = side_by_side(plan.transfer_rounds, 1, upload, raw_upload, settle).await;
    rows.push(transfer(
        format!("`Upload` of {}", Plan::mib(bytes)),
        &ours,
        "`PUT …/archive` of a tar",
        &theirs,
        bytes,
    ));
    let download = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move { assert_eq!(c.download(&id, "/tmp/big").await, bytes) }
    };
    let raw_download = || async {
        assert!(engine::get_archive_len(docker, container, "/tmp/big-raw").await >= bytes);
    };
    let (ours, theirs) =
        side_by_side(plan.transfer_rounds, 1, download, raw_download, settle).await;
    rows.push(transfer(
        format!("`Download` of {}", Plan::mib(bytes)),
        &ours,
        "`GET …/archive`",
        &theirs,
        bytes,
    ));

    let files = plan.tree_files;
    let tree: Bytes = engine::tree_tar(files);
    let tree_bytes = tree.len() as u64;
    clients
        .clone()
        .run(id, &["mkdir", "-p", "/tmp/tree-raw"])
        .await;
    let upload_tree = || {
        let (mut c, id, tree) = (clients.clone(), id.to_owned(), tree.clone());
        async move {
            let entries = c.upload_archive(&id, "/tmp/tree", &tree).await;
            assert!(entries >= files as i64, "{entries} entries unpacked");
        }
    };
    let raw_upload_tree =
        || engine::put_archive(docker, container, "/tmp/tree-raw", vec![tree.clone()]);
    let (ours, theirs) = side_by_side(
        plan.transfer_rounds,
        1,
        upload_tree,
        raw_upload_tree,
        settle,
    )
    .await;
    rows.push(transfer(
        format!(
            "`UploadArchive` of a {files}-file tree ({} KiB tar)",
            tree_bytes >> 10
        ),
        &ours,
        "`PUT …/archive`",
        &theirs,
        tree_bytes,
    ));
    let download_tree = || {
        let (mut c, id) = (clients.clone(), id.to_owned());
        async move {
            let tar = c.download_archive(&id, "/tmp/tree").await;
            assert_eq!(engine::files_in(&tar), files);
        }
    };
    let raw_download_tree = || async {
        let tar = engine::get_archive(docker, container, "/tmp/tree-raw").await;
        assert_eq!(engine::files_in(&tar), files);
    };
    let (ours, theirs) = side_by_side(
        plan.transfer_rounds,
        1,
        download_tree,
        raw_download_tree,
        settle,
    )
    .await;
    rows.push(transfer(
        format!("`DownloadArchive` of the {files}-file tree"),
        &ours,
        "`GET …/archive`",
        &theirs,
        tree_bytes,
    ));
    rows
}
