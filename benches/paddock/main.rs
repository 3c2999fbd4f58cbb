//! Paddock side by side with the floor beneath it, in one run.
//!
//! `scripts/bench` (which builds what it needs and runs
//! `cargo bench --bench paddock`) measures every operation through
//! Paddock's gRPC API and directly against the floor, alternating the two,
//! and prints min, median and p95 of each with the ratio Paddock/floor, as
//! a Markdown table (BENCHMARKS.md explains it). Any other invocation, such
//! as `cargo test --bench paddock` (which CI runs), is a smoke run with few
//! rounds and small sizes that only checks that every measurement works;
//! nothing here fails on a timing.
//!
//! The floors: on the process provider, a plain fork/exec and pipe (and
//! plain file reads and writes) from this process; on Docker, the Docker
//! Engine API driven directly with bollard (exec, archive, create and
//! start) on the same engine, image and container. The server under test
//! is the static release build (`PADDOCK_STATIC_AGENT`) in its own process.
//!
//! Sections can be chosen by name after `--`: `process`, `docker`,
//! `gvisor` (Docker sandboxes under runsc next to runc), `warm` (creates
//! claiming from a template's warm pool), `ports` (PortForward
//! and the preview proxy next to a published port), `api`, `density` (how
//! many idle Docker sandboxes the machine holds, and what each costs),
//! `memory`,
//! `tracing` (the cost of exporting traces) (all by default). The Docker sections need an engine, the
//! static agent and the image paddock-test/busybox; without them they say
//! so and are skipped, except under CI=true, where that is an error.

mod api;
mod density;
mod docker;
mod engine;
mod gvisor;
mod ops;
mod ports;
mod process;
mod python;
mod report;
mod server;
mod tracing;
mod warm;

use std::future::Future;
use std::time::{Duration, Instant};

use report::Row;

/// How much each measurement does: a full run or a smoke run.
pub struct Plan {
    pub full: bool,
    /// Rounds of small operations (exec round trips, small files).
    pub rounds: usize,
    /// Rounds of sandbox creation.
    pub create_rounds: usize,
    /// Rounds of each bulk transfer.
    pub transfer_rounds: usize,
    /// The stdout stream's size.
    pub stdout_bytes: u64,
    /// The stdin stream's size.
    pub stdin_bytes: u64,
    /// The single file moved each way.
    pub file_bytes: u64,
    /// Files in the tree moved each way.
    pub tree_files: usize,
    /// Commands started at once, and batches of them.
    pub concurrent: usize,
    pub batches: usize,
    /// Callers at once, and how long they call, for request rates.
    pub callers: usize,
    pub rate_window: Duration,
    /// Exec streams held open to measure what one costs.
    pub idle_streams: usize,
}

impl Plan {
    fn full() -> Self {
        Self {
            full: true,
            rounds: 200,
            create_rounds: 15,
            transfer_rounds: 3,
            stdout_bytes: 1 << 30,
            stdin_bytes: 256 << 20,
            file_bytes: 256 << 20,
            tree_files: 1000,
            concurrent: 100,
            batches: 5,
            callers: 64,
            rate_window: Duration::from_secs(3),
            idle_streams: 1000,
        }
    }

    fn smoke() -> Self {
        Self {
            full: false,
            rounds: 5,
            create_rounds: 2,
            transfer_rounds: 1,
            stdout_bytes: 8 << 20,
            stdin_bytes: 4 << 20,
            file_bytes: 8 << 20,
            tree_files: 50,
            concurrent: 100,
            batches: 1,
            callers: 64,
            rate_window: Duration::from_millis(300),
            idle_streams: 50,
        }
    }

    pub fn mib(bytes: u64) -> String {
        if bytes >= 1 << 30 {
            format!("{} GiB", bytes >> 30)
        } else {
            format!("{} MiB", bytes >> 20)
        }
    }
}

/// Times one run of a future.
pub async fn timed<F: Future>(work: F) -> (Duration, F::Output) {
    let started = Instant::now();
    let output = work.await;
    (started.elapsed(), output)
}

/// What one sample's future gives: `()` when the whole future is the
/// operation, or the time it measured itself when it also does untimed
/// work (such as removing what it made).
pub trait Sample {
    fn or_whole(self, whole: Duration) -> Duration;
}

impl Sample for () {
    fn or_whole(self, whole: Duration) -> Duration {
        whole
    }
}

impl Sample for Duration {
    fn or_whole(self, _whole: Duration) -> Duration {
        self
    }
}

/// Runs Paddock's side and the floor `rounds` times each (after `warmup`
/// unrecorded rounds), alternating which goes first so that neither always
/// meets an idle machine or the other's leftovers. `after_floor` runs
/// untimed after each floor sample (the engine's settling time).
pub async fn side_by_side<P, PF, F, FF, A, AF>(
    rounds: usize,
    warmup: usize,
    mut paddock: P,
    mut floor: F,
    mut after_floor: A,
) -> (Vec<Duration>, Vec<Duration>)
where
    P: FnMut() -> PF,
    PF: Future<Output: Sample>,
    F: FnMut() -> FF,
    FF: Future<Output: Sample>,
    A: FnMut() -> AF,
    AF: Future<Output = ()>,
{
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..warmup + rounds {
        let paddock_first = round % 2 == 0;
        let mut pair = [Duration::ZERO; 2];
        for ours_now in [paddock_first, !paddock_first] {
            if ours_now {
                let (whole, sample) = timed(paddock()).await;
                pair[0] = sample.or_whole(whole);
            } else {
                let (whole, sample) = timed(floor()).await;
                pair[1] = sample.or_whole(whole);
                after_floor().await;
            }
        }
        if round >= warmup {
            ours.push(pair[0]);
            theirs.push(pair[1]);
        }
    }
    (ours, theirs)
}

/// Nothing to wait for after a floor sample.
pub async fn no_pause() {}

/// How long a caller was quiet before an "after idle" sample: an agent's
/// pace between tool calls, long enough for the machine's threads to sleep.
pub const IDLE: Duration = Duration::from_millis(50);

/// `work` after [`IDLE`] of quiet, timing only `work`.
pub async fn after_idle<F: Future>(work: F) -> Duration {
    tokio::time::sleep(IDLE).await;
    timed(work).await.0
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Says why a section cannot run; under CI that is a failure.
pub fn skip(section: &str, why: &str) {
    assert!(!in_ci(), "the {section} benchmarks cannot run: {why}");
    println!("{section}: skipped: {why}");
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!(", {} GiB", (kib + (1 << 19)) >> 20)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores{memory}, Linux {}", kernel.trim())
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let chosen: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |section: &str| chosen.is_empty() || chosen.iter().any(|c| c == section);
    let plan = if full { Plan::full() } else { Plan::smoke() };
    println!(
        "Paddock benchmarks ({}), server {}, machine: {}",
        if full {
            "full run"
        } else {
            "smoke run: few rounds, small sizes; `scripts/bench` gives the figures"
        },
        server::binary().display(),
        machine()
    );

    let docker = match engine::engine().await {
        Ok(docker) => {
            engine::remove_leftovers(&docker).await;
            Some(docker)
        }
        Err(why) => {
            if wants("docker") {
                skip("docker", &why);
            }
            None
        }
    };
    let mut rows: Vec<Row> = Vec::new();
    if wants("process") {
        rows.extend(process::run(&plan).await);
    }
    if let Some(docker) = &docker
        && wants("docker")
    {
        rows.extend(docker::run(&plan, docker).await);
    }
    if let Some(docker) = &docker
        && chosen.iter().any(|c| c == "docker-commands")
    {
        rows.extend(docker::commands(&plan, docker).await);
    }
    if let Some(docker) = &docker
        && wants("ports")
    {
        rows.extend(ports::run(&plan, docker).await);
    }
    if let Some(docker) = &docker
        && wants("warm")
    {
        rows.extend(warm::run(&plan, docker).await);
    }
    if let Some(docker) = &docker
        && wants("gvisor")
    {
        rows.extend(gvisor::run(&plan, docker).await);
    }
    if wants("api") {
        rows.extend(api::rates(&plan, docker.as_ref()).await);
    }
    if let Some(docker) = &docker
        && wants("density")
    {
        rows.extend(density::run(&plan, docker).await);
    }
    if wants("tracing") {
        rows.extend(tracing::run(&plan).await);
    }
    if wants("memory") {
        rows.extend(api::memory(&plan, docker.is_some()).await);
    }
    println!("{}", report::table(&rows));
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| r.met() == Some(false))
        .map(|r| r.operation.as_str())
        .collect();
    if full && !missed.is_empty() {
        println!("goals missed: {}", missed.join("; "));
    }
}
