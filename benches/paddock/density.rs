//! How many idle Docker sandboxes this machine holds: sandboxes are made
//! until the plan's count, or until a create fails or the machine's
//! available memory runs low; then what each costs (the proportional set
//! size of its agent and of its engine shim, so that pages shared between
//! sandboxes, such as the agent's text, are counted once), the server's
//! resident memory, and `GetSandbox` and `ListSandboxes` (a page of 100) at
//! that count.

use std::time::Duration;

use paddock::pb;

use crate::engine::IMAGE;
use crate::ops::Clients;
use crate::report::{Goal, Measured, Row, Stats};
use crate::server::ServerProcess;
use crate::{Plan, timed};

/// Creates in flight at once.
const PARALLEL_CREATES: usize = 4;
/// Stop making sandboxes when the machine has less memory than this left.
const MEMORY_RESERVE: u64 = 2 << 30;

/// The machine's available memory (MemAvailable) in bytes.
fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib << 10)
}

/// The proportional set size of process `pid` in bytes, when readable.
fn pss(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kib: u64 = rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib << 10)
}

/// The pids of the processes whose command line holds every word of
/// `words`.
fn processes_with(words: &[&str]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            words
                .iter()
                .all(|word| cmdline.contains(word))
                .then_some(pid)
        })
        .collect()
}

/// The mean PSS of the processes whose command lines name one of `ids`
/// and hold `words`, with how many were found.
fn mean_pss(words: &[&str], ids: &[String]) -> (u64, usize) {
    let pids: Vec<u32> = processes_with(words)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            ids.iter().any(|id| cmdline.contains(id.as_str()))
        })
        .collect();
    let sizes: Vec<u64> = pids.iter().filter_map(|pid| pss(*pid)).collect();
    if sizes.is_empty() {
        return (0, 0);
    }
    (sizes.iter().sum::<u64>() / sizes.len() as u64, sizes.len())
}

/// The ids of the engine's containers of `sandbox_ids` (the shims name
/// containers by id, not by name).
async fn container_ids(docker: &bollard::Docker, sandbox_ids: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for sandbox in sandbox_ids {
        if let Ok(container) = docker
            .inspect_container(
                &format!("paddock-{sandbox}"),
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            && let Some(id) = container.id
        {
            ids.push(id);
        }
    }
    ids
}

pub async fn run(plan: &Plan, docker: &bollard::Docker) -> Vec<Row> {
    let target = if plan.full { 1000 } else { 4 };
    println!("density: making up to {target} idle Docker sandboxes");
    let section = "Density: idle Docker sandboxes on this machine (default network, the engine's \
                   runc; memory is proportional: shared pages counted once)"
        .to_owned();
    let server = ServerProcess::start("docker", "auto");
    let baseline = server.rss();
    let clients = Clients::new(server.connect().await);
    let mut made: Vec<String> = Vec::new();
    let mut stopped_by = None;
    let started = std::time::Instant::now();
    while made.len() < target {
        if available_memory() < MEMORY_RESERVE {
            stopped_by = Some("the machine's available memory ran low".to_owned());
            break;
        }
        let batch = PARALLEL_CREATES.min(target - made.len());
        let creates = (0..batch).map(|_| {
            let mut clients = clients.clone();
            async move {
                clients
                    .sandboxes
                    .create_sandbox(pb::CreateSandboxRequest {
                        image: IMAGE.into(),
                        ..Default::default()
                    })
                    .await
                    .map(|answer| answer.into_inner().sandbox.unwrap_or_default())
            }
        });
        for outcome in futures::future::join_all(creates).await {
            match outcome {
                Ok(sandbox) if sandbox.state == pb::SandboxState::Running as i32 => {
                    made.push(sandbox.id);
                }
                Ok(sandbox) => {
                    stopped_by = Some(format!("a create FAILED: {}", sandbox.state_reason))
                }
                Err(status) => stopped_by = Some(format!("a create failed: {}", status.message())),
            }
        }
        if stopped_by.is_some() {
            break;
        }
        if made.len().is_multiple_of(100) {
            println!(
                "density: {} sandboxes after {:?}",
                made.len(),
                started.elapsed()
            );
        }
    }
    let count = made.len();
    println!(
        "density: {count} sandboxes in {:?}{}",
        started.elapsed(),
        stopped_by
            .as_deref()
            .map(|why| format!("; stopped: {why}"))
            .unwrap_or_default()
    );
    // Let the agents and the server settle into idleness.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (agent, agents) = mean_pss(&["paddock", "agent", "--sandbox-id"], &made);
    let containers = container_ids(docker, &made).await;
    let (shim, shims) = mean_pss(&["containerd-shim"], &containers);
    let rss = server.rss();

    let mut sandboxes = clients.sandboxes.clone();
    let mut gets = Vec::new();
    let mut lists = Vec::new();
    for round in 0..if plan.full { 200 } else { 5 } {
        let id = made[round % count.max(1)].clone();
        let (took, answer) =
            timed(sandboxes.get_sandbox(pb::GetSandboxRequest { sandbox_id: id })).await;
        answer.expect("GetSandbox");
        gets.push(took);
        let (took, answer) = timed(sandboxes.list_sandboxes(pb::ListSandboxesRequest {
            page_size: 100,
            ..Default::default()
        }))
        .await;
        assert_eq!(
            answer.expect("ListSandboxes").into_inner().sandboxes.len(),
            count.min(100)
        );
        lists.push(took);
    }
    println!("density: removing the sandboxes");
    server.stop().await;

    let row = |operation: String, paddock: Measured, goal: Option<Goal>| Row {
        section: section.clone(),
        operation,
        paddock,
        floor: None,
        goal,
    };
    let mut rows = vec![
        row(
            format!(
                "idle sandboxes held{}",
                stopped_by
                    .map(|why| format!(" (stopped: {why})"))
                    .unwrap_or_default()
            ),
            Measured::Count(count as u64),
            plan.full.then_some(Goal::CountAtLeast(1000)),
        ),
        row(
            format!(
                "server resident memory with {count} sandboxes (idle, none: {:.1} MiB)",
                baseline as f64 / f64::from(1 << 20)
            ),
            Measured::Memory(rss),
            Some(Goal::MemoryUnder(200 << 20)),
        ),
        row(
            format!("each sandbox's agent, proportional set (mean of {agents})"),
            Measured::Memory(agent),
            None,
        ),
        row(
            format!("each sandbox's engine shim, proportional set (mean of {shims})"),
            Measured::Memory(shim),
            None,
        ),
        row(
            format!("`GetSandbox` with {count} sandboxes"),
            Measured::Latency(Stats::of(&gets)),
            None,
        ),
    ];
    rows.push(row(
        format!("`ListSandboxes` of 100 with {count} sandboxes"),
        Measured::Latency(Stats::of(&lists)),
        Some(Goal::MedianUnder(Duration::from_millis(20))),
    ));
    rows
}
