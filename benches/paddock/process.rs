//! The process provider next to a plain fork/exec, pipe and file access
//! from this process.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use paddock::pb;

use crate::ops::{Clients, StdinFeed, stdout_command};
use crate::report::{Goal, Measured, Row, Stats};
use crate::server::ServerProcess;
use crate::{Plan, after_idle, no_pause, side_by_side, timed};

const SECTION: &str = "Process provider (floor: fork/exec and pipes from one process)";

fn row(operation: String, paddock: Measured, floor: Option<(String, Measured)>) -> Row {
    Row {
        section: SECTION.to_owned(),
        operation,
        paddock,
        floor,
        goal: None,
    }
}

fn fork_exec(command: &[&str]) {
    let status = Command::new(command[0])
        .args(&command[1..])
        .status()
        .expect("fork/exec");
    assert!(status.success(), "{command:?} failed");
}

/// [`stdout_command`] read through a pipe; returns the bytes read.
fn pipe_stdout(bytes: u64) -> u64 {
    let command = stdout_command(bytes);
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dd");
    let total = drain(child.stdout.take().expect("stdout"));
    assert!(child.wait().expect("wait").success());
    total
}

/// Reads a pipe to its end in 1 MiB reads; returns the bytes read.
fn drain(mut pipe: impl Read) -> u64 {
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = pipe.read(&mut buffer).expect("read the pipe");
        if n == 0 {
            return total;
        }
        total += n as u64;
    }
}

/// `bytes` through a pipe into `dd`, which writes them to `path`.
fn pipe_into_file(path: &std::path::Path, bytes: u64) {
    let mut child = Command::new("dd")
        .arg(format!("of={}", path.display()))
        .args(["bs=1048576", "status=none"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn dd");
    let mut input = child.stdin.take().expect("stdin");
    for chunk in StdinFeed(bytes).chunks() {
        input.write_all(&chunk).expect("write the pipe");
    }
    drop(input);
    assert!(child.wait().expect("wait").success());
}

/// `cat path` read through a pipe; returns the bytes read.
fn pipe_from_file(path: &std::path::Path) -> u64 {
    let mut child = Command::new("cat")
        .arg(path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn cat");
    let total = drain(child.stdout.take().expect("stdout"));
    assert!(child.wait().expect("wait").success());
    total
}

/// `wc -c` fed `bytes` through a pipe; checks its count.
fn pipe_stdin(bytes: u64) {
    let mut child = Command::new("wc")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn wc");
    let mut input = child.stdin.take().expect("stdin");
    for chunk in StdinFeed(bytes).chunks() {
        input.write_all(&chunk).expect("write the pipe");
    }
    drop(input);
    let output = child.wait_with_output().expect("wait");
    let count: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a count");
    assert_eq!(count, bytes);
}

pub async fn run(plan: &Plan) -> Vec<Row> {
    println!("process provider: measuring");
    let server = ServerProcess::start("process", "auto");
    let mut rows = Vec::new();
    let clients = Clients::new(server.connect().await);

    // Create → RUNNING, and → the first output of `echo hi`. The floor of
    // a process sandbox would be a fork, which says nothing: no floor.
    let mut created = Vec::new();
    let mut interactive = Vec::new();
    for _ in 0..plan.create_rounds {
        let mut c = clients.clone();
        let (took, id) = timed(c.create(pb::CreateSandboxRequest::default())).await;
        created.push(took);
        c.delete(&id).await;
        let (took, id) = timed(async {
            let id = c.create(pb::CreateSandboxRequest::default()).await;
            assert_eq!(&c.run(&id, &["echo", "hi"]).await[..], b"hi\n");
            id
        })
        .await;
        interactive.push(took);
        c.delete(&id).await;
    }
    rows.push(row(
        "create → RUNNING".into(),
        Measured::Latency(Stats::of(&created)),
        None,
    ));
    rows.push(row(
        "create → first output of `echo hi`".into(),
        Measured::Latency(Stats::of(&interactive)),
        None,
    ));

    let id = clients
        .clone()
        .create(pb::CreateSandboxRequest::default())
        .await;
    let true_ = || {
        let (mut c, id) = (clients.clone(), id.clone());
        async move {
            c.run(&id, &["true"]).await;
        }
    };
    let (run, floor) = side_by_side(
        plan.rounds,
        5,
        true_,
        || async { fork_exec(&["true"]) },
        no_pause,
    )
    .await;
    let floor = Measured::Latency(Stats::of(&floor));
    let mut r = row(
        "`RunCommand` of `true`".into(),
        Measured::Latency(Stats::of(&run)),
        Some(("fork/exec of `true`".into(), floor)),
    );
    r.goal = Some(Goal::MedianUnder(std::time::Duration::from_millis(3)));
    rows.push(r);

    let exec_true = || {
        let (mut c, id) = (clients.clone(), id.clone());
        async move {
            c.exec(&id, &["true"], None).await;
        }
    };
    let (bidi, floor) = side_by_side(
        plan.rounds,
        5,
        exec_true,
        || async { fork_exec(&["true"]) },
        no_pause,
    )
    .await;
    rows.push(row(
        "`Exec` of `true` (bidirectional stream)".into(),
        Measured::Latency(Stats::of(&bidi)),
        Some((
            "fork/exec of `true`".into(),
            Measured::Latency(Stats::of(&floor)),
        )),
    ));

    // As agents call: a pause before each call.
    let idle_run = || {
        let (mut c, id) = (clients.clone(), id.clone());
        after_idle(async move {
            c.run(&id, &["true"]).await;
        })
    };
    let (run, floor) = side_by_side(
        plan.rounds,
        5,
        idle_run,
        || after_idle(async { fork_exec(&["true"]) }),
        no_pause,
    )
    .await;
    rows.push(row(
        "`RunCommand` of `true` after 50 ms idle".into(),
        Measured::Latency(Stats::of(&run)),
        Some((
            "fork/exec of `true` after 50 ms idle".into(),
            Measured::Latency(Stats::of(&floor)),
        )),
    ));

    let n = plan.concurrent;
    let batch = || {
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let (mut c, id) = (clients.clone(), id.clone());
                async move { c.run(&id, &["true"]).await }
            })
            .collect();
        async move {
            futures::future::join_all(calls).await;
        }
    };
    let fork_batch = || async move {
        let children: Vec<_> = (0..n)
            .map(|_| Command::new("true").spawn().expect("spawn true"))
            .collect();
        for mut child in children {
            assert!(child.wait().expect("wait").success());
        }
    };
    let (ours, theirs) = side_by_side(plan.batches, 1, batch, fork_batch, no_pause).await;
    rows.push(row(
        format!("{n} concurrent `RunCommand`s of `true`, whole batch"),
        Measured::Latency(Stats::of(&ours)),
        Some((
            format!("{n} concurrent fork/execs"),
            Measured::Latency(Stats::of(&theirs)),
        )),
    ));

    let bytes = plan.stdout_bytes;
    let command = stdout_command(bytes);
    let argv: &[&str] = &command.iter().map(String::as_str).collect::<Vec<_>>();
    let stdout = || {
        let (mut c, id) = (clients.clone(), id.clone());
        async move { assert_eq!(c.exec(&id, argv, None).await, bytes) }
    };
    let (ours, theirs) = side_by_side(
        plan.transfer_rounds,
        1,
        stdout,
        || async move {
            assert_eq!(pipe_stdout(bytes), bytes);
        },
        no_pause,
    )
    .await;
    let mut r = row(
        format!("stdout of a {} stream (`Exec`)", Plan::mib(bytes)),
        Measured::Transfer {
            time: Stats::of(&ours),
            bytes,
        },
        Some((
            "a pipe from `dd`".into(),
            Measured::Transfer {
                time: Stats::of(&theirs),
                bytes,
            },
        )),
    );
    r.goal = Some(Goal::BytesPerSecondAtLeast(1e9));
    rows.push(r);

    let bytes = plan.stdin_bytes;
    let stdin = || {
        let (mut c, id) = (clients.clone(), id.clone());
        async move {
            let out = c.exec(&id, &["wc", "-c"], Some(StdinFeed(bytes))).await;
            assert_eq!(out, bytes.to_string().len() as u64 + 1);
        }
    };
    let (ours, theirs) = side_by_side(
        plan.transfer_rounds,
        1,
        stdin,
        || async move { pipe_stdin(bytes) },
        no_pause,
    )
    .await;
    rows.push(row(
        format!("stdin of {} into `wc -c` (`Exec`)", Plan::mib(bytes)),
        Measured::Transfer {
            time: Stats::of(&ours),
            bytes,
        },
        Some((
            "a pipe into `wc -c`".into(),
            Measured::Transfer {
                time: Stats::of(&theirs),
                bytes,
            },
        )),
    ));

    // Files: the floor moves the same bytes through a pipe into `dd` that
    // writes them to a file, and out of one through `cat`: data crossing
    // into another process and onto the same filesystem (the server's
    // data directory).
    let bytes = plan.file_bytes;
    let local = server.data.path().join("floor.bin");
    let upload = || {
        let (mut c, id) = (clients.clone(), id.clone());
        async move { c.upload(&id, "big.bin", bytes).await }
    };
    let write_local = || {
        let local = local.clone();
        async move { pipe_into_file(&local, bytes) }
    };
    let (ours, theirs) = side_by_side(plan.transfer_rounds, 1, upload, write_local, no_pause).await;
    rows.push(row(
        format!("`Upload` of {}", Plan::mib(bytes)),
        Measured::Transfer {
            time: Stats::of(&ours),
            bytes,
        },
        Some((
            "a pipe into `dd of=FILE`".into(),
            Measured::Transfer {
                time: Stats::of(&theirs),
                bytes,
            },
        )),
    ));
    let download = || {
        let (mut c, id) = (clients.clone(), id.clone());
        async move { assert_eq!(c.download(&id, "big.bin").await, bytes) }
    };
    let read_local = || {
        let local = local.clone();
        async move { assert_eq!(pipe_from_file(&local), bytes) }
    };
    let (ours, theirs) =
        side_by_side(plan.transfer_rounds, 1, download, read_local, no_pause).await;
    rows.push(row(
        format!("`Download` of {}", Plan::mib(bytes)),
        Measured::Transfer {
            time: Stats::of(&ours),
            bytes,
        },
        Some((
            "a pipe from `cat FILE`".into(),
            Measured::Transfer {
                time: Stats::of(&theirs),
                bytes,
            },
        )),
    ));

    clients.clone().delete(&id).await;
    server.stop().await;
    rows
}
