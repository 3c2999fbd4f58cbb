//! One command in the sandbox: its process group, its pipes or terminal, the
//! pumps that move its output into its log, and its recorded state.
//!
//! It is one file, past 500 lines, because these are the parts of one
//! process's life: the record is written as the process starts and ends,
//! the pumps end when it does, and a signal or a timeout acts on the group
//! the spawn made.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tracing::warn;

use super::output::{OutputLog, Stream};
use super::reaper::{ExitStatus, Reaper};
use super::spawn::{Spawned, spawn_piped};
use crate::pb;
use crate::signals;

/// How long output may stay silent after the command's leader exits before
/// the pumps stop waiting for processes that still hold its pipes.
const DRAIN_QUIET: Duration = Duration::from_millis(250);
/// The most output one chunk carries (and one read takes): large enough
/// that a fast writer's output crosses the agent, the server and the
/// client in a few messages per megabyte, as ExecOutput documents.
const CHUNK_BYTES: usize = 256 * 1024;
/// The capacity asked for the command's pipes (Linux's default is 64 KiB):
/// room for a few chunks, so a fast writer is not stopped and woken for
/// each one. Best effort: unprivileged processes may be held to less.
const PIPE_BYTES: libc::c_int = 1 << 20;
/// The pumps' "last output" mark while a chunk is being appended (perhaps
/// waiting for a slow reader): never quiet.
const BUSY: i64 = i64::MAX;
/// The most output bytes a command whose caller waits for it holds in
/// memory; past it its output log goes to disk.
pub const HELD_OUTPUT_BYTES: u64 = 1 << 20;

/// What to run, as the agent sees it.
pub struct Launch {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The whole environment.
    pub env: BTreeMap<String, String>,
    /// The working directory, in the agent's view of the filesystem.
    pub cwd: PathBuf,
    /// Terminal size, for tty commands.
    pub tty: Option<(u16, u16)>,
    /// When to end it.
    pub timeout: Option<Duration>,
    /// Who it runs as; `None`: the agent's own user.
    pub identity: Option<super::users::Identity>,
    /// When a caller waits for it: how long its record and output may stay
    /// in memory only, unless its output passes [`HELD_OUTPUT_BYTES`] or the
    /// caller goes sooner (see [`Command::hold`]). `None`: they are written
    /// to disk as it starts.
    pub held_for: Option<Duration>,
}

/// Where a command's stdin goes.
enum Input {
    Pipe(pipe::Sender),
    Pty(Arc<AsyncFd<OwnedFd>>),
}

/// A command and its state. Shared by the registry and every stream on it.
pub struct Command {
    /// The command's id.
    pub id: String,
    /// Its output log.
    pub log: Arc<OutputLog>,
    dir: PathBuf,
    record: Mutex<pb::Command>,
    /// Where the record and output are; locked while the record is written,
    /// so that the record written is always the newest.
    storage: Mutex<Storage>,
    pgid: i32,
    input: tokio::sync::Mutex<Option<Input>>,
    pty: Option<Arc<AsyncFd<OwnedFd>>>,
    ended: watch::Sender<bool>,
}

impl Command {
    /// Starts `launch` as a new process group and returns the command,
    /// RUNNING. Fails when the program cannot be started.
    pub fn spawn(
        reaper: &Reaper,
        id: String,
        dir: PathBuf,
        output_budget: u64,
        record: pb::Command,
        launch: Launch,
    ) -> std::io::Result<Arc<Self>> {
        let log = if launch.held_for.is_some() {
            OutputLog::held(&dir, output_budget, HELD_OUTPUT_BYTES)
        } else {
            OutputLog::create(&dir, output_budget)?
        };
        let (started, exited) = start(reaper, &launch)?;
        let pid = started.pid();

        let mut record = record;
        record.state = pb::CommandState::Running as i32;
        record.pid = pid;
        record.start_time = Some(SystemTime::now().into());

        let last_output = Arc::new(AtomicI64::new(0));
        let started_at = Instant::now();
        let mut pumps = Vec::new();
        let mut probes = Vec::new();
        let (input, pty) = match started {
            Started::Terminal { master, .. } => {
                probes.push(master.try_clone()?);
                // SAFETY: the master fd is owned here and stays open for as
                // long as the AsyncFd lives; nothing else registers it.
                let master =
                    Arc::new(unsafe { AsyncFd::register(master) }.map_err(std::io::Error::from)?);
                pumps.push(tokio::spawn(pump_pty(
                    master.clone(),
                    log.clone(),
                    last_output.clone(),
                    started_at,
                )));
                (Some(Input::Pty(master.clone())), Some(master))
            }
            Started::Piped(Spawned {
                stdin,
                stdout,
                stderr,
                ..
            }) => {
                for fd in [&stdout, &stderr, &stdin] {
                    grow_pipe(fd);
                }
                probes.push(stdout.try_clone()?);
                probes.push(stderr.try_clone()?);
                let stdout = pipe::Receiver::from_owned_fd(stdout)?;
                let stderr = pipe::Receiver::from_owned_fd(stderr)?;
                let stdin = pipe::Sender::from_owned_fd(stdin)?;
                for (reader, stream) in [(stdout, Stream::Stdout), (stderr, Stream::Stderr)] {
                    pumps.push(tokio::spawn(pump_pipe(
                        reader,
                        stream,
                        log.clone(),
                        last_output.clone(),
                        started_at,
                    )));
                }
                (Some(Input::Pipe(stdin)), None)
            }
        };

        let command = Arc::new(Self {
            id,
            log,
            dir,
            record: Mutex::new(record),
            storage: Mutex::new(Storage::Held),
            pgid: pid,
            input: tokio::sync::Mutex::new(input),
            pty,
            ended: watch::channel(false).0,
        });
        if launch.held_for.is_none() {
            command.write_to_disk();
        }
        tokio::spawn(command.clone().supervise(
            exited,
            Pumps {
                tasks: pumps,
                probes,
                last_output,
                started: started_at,
            },
            launch.timeout,
            launch.held_for.unwrap_or_default(),
        ));
        Ok(command)
    }

    /// A command recorded by an earlier agent. One that was RUNNING is now
    /// LOST: this agent cannot know how it ended.
    pub fn reopen(dir: &Path) -> std::io::Result<Arc<Self>> {
        let bytes = std::fs::read(dir.join("command.pb"))?;
        let mut record = pb::Command::decode(bytes.as_slice())
            .map_err(|e| std::io::Error::other(format!("corrupt command record: {e}")))?;
        if record.state == pb::CommandState::Running as i32 {
            record.state = pb::CommandState::Lost as i32;
            record.state_reason = "the sandbox's agent stopped while the command ran".into();
            record.pid = 0;
        }
        let command = Arc::new(Self {
            id: record.id.clone(),
            log: OutputLog::reopen(dir)?,
            dir: dir.to_path_buf(),
            record: Mutex::new(record),
            storage: Mutex::new(Storage::OnDisk),
            pgid: 0,
            input: tokio::sync::Mutex::new(None),
            pty: None,
            ended: watch::channel(true).0,
        });
        command.persist();
        Ok(command)
    }

    /// The command's record, with its log position.
    pub fn record(&self) -> pb::Command {
        let mut record = self.record.lock().expect("command record").clone();
        record.first_retained_seq = self.log.first_retained_seq();
        record.last_seq = self.log.position().last_seq;
        record
    }

    /// Whether the command's record and output are on disk, or held in
    /// memory while its caller waits.
    pub fn is_on_disk(&self) -> bool {
        *self.storage.lock().expect("command storage") == Storage::OnDisk
    }

    /// Writes the command's output and record to disk, and keeps them there
    /// from now on; does nothing when they already are. Failures are logged:
    /// the command goes on, held in memory.
    pub fn write_to_disk(&self) {
        let mut storage = self.storage.lock().expect("command storage");
        if *storage != Storage::Held {
            return;
        }
        match self.log.write_to_disk() {
            Ok(()) => {
                self.persist();
                *storage = Storage::OnDisk;
            }
            Err(error) => {
                warn!(command_id = %self.id, %error, "cannot write the command's output log")
            }
        }
    }

    /// Removes the command's record and output from disk, and keeps them
    /// off it: the agent no longer knows the command.
    pub fn forget(&self) {
        let mut storage = self.storage.lock().expect("command storage");
        if *storage == Storage::OnDisk {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        *storage = Storage::Forgotten;
    }

    /// A guard for the caller waiting for this command: unless
    /// [`Hold::delivered`] is called, dropping it (the caller went away)
    /// writes the command to disk, so a reattaching caller finds it all.
    pub fn hold(self: &Arc<Self>) -> Hold {
        Hold {
            command: Some(self.clone()),
        }
    }

    /// Whether the command is still running.
    pub fn is_running(&self) -> bool {
        !*self.ended.borrow()
    }

    /// Resolves once the command has ended and its log is complete.
    pub async fn ended(&self) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Sends `signal` to the command's process group.
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        if !self.is_running() || self.pgid <= 0 {
            return Ok(());
        }
        // SAFETY: kill takes plain integers.
        if unsafe { libc::kill(-self.pgid, signal) } < 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ESRCH) {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Writes to the command's stdin. Fails once stdin is closed.
    pub async fn write_stdin(&self, data: &[u8]) -> std::io::Result<()> {
        let mut input = self.input.lock().await;
        match input.as_mut() {
            Some(Input::Pipe(pipe)) => pipe.write_all(data).await,
            Some(Input::Pty(master)) => write_pty(master, data).await,
            None => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "stdin is closed",
            )),
        }
    }

    /// Closes the command's stdin (for a tty, sends end-of-file).
    pub async fn close_stdin(&self) -> std::io::Result<()> {
        let mut input = self.input.lock().await;
        match input.take() {
            Some(Input::Pty(master)) => {
                // A terminal has no half-close: EOF is ^D at a line start.
                write_pty(&master, &[4]).await?;
                *input = Some(Input::Pty(master));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Resizes the command's terminal; does nothing without one.
    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        match &self.pty {
            Some(master) => set_window_size(master.get_ref(), rows, cols),
            None => Ok(()),
        }
    }

    async fn supervise(
        self: Arc<Self>,
        exited: tokio::sync::oneshot::Receiver<ExitStatus>,
        pumps: Pumps,
        timeout: Option<Duration>,
        held_for: Duration,
    ) {
        let mut timed_out = false;
        let deadline = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(exited);
        tokio::pin!(deadline);
        // A held command goes to disk once it outlives its grace or its
        // output its memory bound (or its caller: see Hold).
        let grace = tokio::time::sleep(held_for);
        tokio::pin!(grace);
        let mut held = !self.is_on_disk();
        let status = loop {
            tokio::select! {
                status = &mut exited => break status,
                () = &mut deadline => {
                    timed_out = true;
                    let _ = self.signal(libc::SIGKILL);
                    break exited.await;
                }
                () = &mut grace, if held => {}
                () = self.log.went_to_disk(), if held => {}
            }
            self.write_to_disk();
            held = false;
        };
        pumps.drain().await;
        self.record_end(status, timed_out);
        *self.input.lock().await = None;
        self.ended.send_replace(true);
    }

    /// Records how the command ended (on disk too, unless it is held) and
    /// completes its log.
    fn record_end(
        &self,
        status: Result<ExitStatus, tokio::sync::oneshot::error::RecvError>,
        timed_out: bool,
    ) {
        let storage = self.storage.lock().expect("command storage");
        {
            let mut record = self.record.lock().expect("command record");
            record.state = pb::CommandState::Exited as i32;
            record.timed_out = timed_out;
            record.end_time = Some(SystemTime::now().into());
            record.pid = 0;
            match status {
                Ok(ExitStatus::Code(code)) => record.exit_code = Some(code),
                Ok(ExitStatus::Signal(signal)) => record.signal = signals::name(signal),
                Err(_) => {
                    record.state = pb::CommandState::Lost as i32;
                    record.state_reason = "the agent lost track of the process".into();
                }
            }
        }
        if *storage == Storage::OnDisk {
            self.persist();
        }
        self.log.complete();
    }

    fn persist(&self) {
        let bytes = self.record().encode_to_vec();
        let temp = self.dir.join("command.pb.tmp");
        let written = std::fs::write(&temp, bytes)
            .and_then(|()| std::fs::rename(&temp, self.dir.join("command.pb")));
        if let Err(error) = written {
            warn!(command_id = %self.id, %error, "cannot record the command's state");
        }
    }
}

/// Where a command's record and output are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    /// In memory only, while its caller waits or after it had everything.
    Held,
    /// On the sandbox's disk, in the command's directory.
    OnDisk,
    /// Nowhere: the agent forgot the command.
    Forgotten,
}

/// The caller waiting for a command; see [`Command::hold`].
pub struct Hold {
    command: Option<Arc<Command>>,
}

impl Hold {
    /// The caller has had everything: the command may stay in memory.
    pub fn delivered(mut self) {
        self.command = None;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(command) = self.command.take() {
            command.write_to_disk();
        }
    }
}

/// A command's process just started: on pipes, or on a terminal.
enum Started {
    Piped(Spawned),
    Terminal { pid: i32, master: OwnedFd },
}

impl Started {
    fn pid(&self) -> i32 {
        match self {
            Self::Piped(spawned) => spawned.pid,
            Self::Terminal { pid, .. } => *pid,
        }
    }
}

/// Starts `launch`'s process in a new process group (a new session, for a
/// terminal) and registers it with `reaper`. A command on pipes as the
/// agent's user, whose program is found, starts through `posix_spawn`;
/// others (a terminal, another user, a program to report missing) through
/// the standard library, which forks.
fn start(
    reaper: &Reaper,
    launch: &Launch,
) -> std::io::Result<(Started, tokio::sync::oneshot::Receiver<ExitStatus>)> {
    let as_user = launch.identity.as_ref().map(|id| (id.uid, id.gid));
    let path = launch.env.get("PATH").map_or("", String::as_str);
    let found = super::program::find(&launch.argv[0], path, &launch.cwd, as_user);
    if let (None, None, Some(program)) = (launch.tty, &launch.identity, &found) {
        return reaper.spawn(|| {
            let spawned = spawn_piped(program, &launch.argv, &launch.env, &launch.cwd)?;
            let pid = spawned.pid;
            Ok((Started::Piped(spawned), pid))
        });
    }
    let mut process = match found {
        Some(program) => {
            let mut process = std::process::Command::new(program);
            process.arg0(&launch.argv[0]);
            process
        }
        None => std::process::Command::new(&launch.argv[0]),
    };
    process
        .args(&launch.argv[1..])
        .env_clear()
        .envs(&launch.env)
        .current_dir(&launch.cwd);
    if let Some(identity) = &launch.identity {
        // Supplementary groups are dropped with the switch.
        process.uid(identity.uid).gid(identity.gid);
    }
    match launch.tty {
        Some((rows, cols)) => {
            let (master, slave) = open_pty(rows, cols)?;
            process
                .stdin(Stdio::from(slave.try_clone()?))
                .stdout(Stdio::from(slave.try_clone()?))
                .stderr(Stdio::from(slave));
            // SAFETY: setsid and ioctl are async-signal-safe.
            unsafe {
                process.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            // The closure takes the command, so that the parent's copies of
            // the terminal's slave side close once it has spawned: until
            // they do, the master never sees the end of output.
            reaper.spawn(move || {
                let child = process.spawn()?;
                let pid = child.id() as i32;
                Ok((Started::Terminal { pid, master }, pid))
            })
        }
        None => {
            process
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
            reaper.spawn(move || {
                let mut child = process.spawn()?;
                let pid = child.id() as i32;
                let spawned = Spawned {
                    pid,
                    stdin: child.stdin.take().expect("piped").into(),
                    stdout: child.stdout.take().expect("piped").into(),
                    stderr: child.stderr.take().expect("piped").into(),
                };
                Ok((Started::Piped(spawned), pid))
            })
        }
    }
}

/// The tasks moving a command's output into its log.
struct Pumps {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Duplicates of the read ends, to ask how much is still unread.
    probes: Vec<OwnedFd>,
    /// Milliseconds since `started` of the last read, or [`BUSY`].
    last_output: Arc<AtomicI64>,
    started: Instant,
}

impl Pumps {
    /// Waits until the pumps have moved everything the command's leader
    /// left behind. A pipe may stay open for ever when a background process
    /// holds it, so a pump is stopped once nothing is unread in its pipe and
    /// the output has been quiet for [`DRAIN_QUIET`] since the leader ended.
    async fn drain(mut self) {
        let exited_at = self.started.elapsed().as_millis() as i64;
        let aborts: Vec<_> = self.tasks.iter().map(|t| t.abort_handle()).collect();
        let mut finished = futures::future::join_all(self.tasks.iter_mut());
        loop {
            tokio::select! {
                _ = &mut finished => return,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            let last = self.last_output.load(Ordering::Relaxed);
            let now = self.started.elapsed().as_millis() as i64;
            let quiet = last != BUSY && now - last.max(exited_at) >= DRAIN_QUIET.as_millis() as i64;
            if quiet && self.probes.iter().all(|fd| unread_bytes(fd) == 0) {
                aborts.iter().for_each(|a| a.abort());
                finished.await;
                return;
            }
        }
    }
}

/// How many bytes wait to be read from a pipe or terminal.
fn unread_bytes(fd: &OwnedFd) -> i32 {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut count) } < 0 {
        // Unknown: assume something is left, so the pump keeps reading.
        return 1;
    }
    count
}

/// Asks for [`PIPE_BYTES`] of capacity in a pipe; keeps what it has when
/// refused (over /proc/sys/fs/pipe-max-size, or the user's pipe quota).
fn grow_pipe(fd: &OwnedFd) {
    // SAFETY: F_SETPIPE_SZ takes a descriptor this function borrows and an
    // integer; it changes nothing but the pipe's capacity.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
}

async fn pump_pipe(
    mut reader: pipe::Receiver,
    stream: Stream,
    log: Arc<OutputLog>,
    last_output: Arc<AtomicI64>,
    started: Instant,
) {
    let mut buffer = BytesMut::new();
    loop {
        // Each chunk is read into memory of its own, which the log, its
        // followers and the gRPC stream then share without copying.
        buffer.reserve(CHUNK_BYTES);
        match reader.read_buf(&mut (&mut buffer).limit(CHUNK_BYTES)).await {
            Ok(0) => return,
            Ok(_) => {
                last_output.store(BUSY, Ordering::Relaxed);
                let appended = log.append(stream, buffer.split().freeze()).await;
                last_output.store(started.elapsed().as_millis() as i64, Ordering::Relaxed);
                if let Err(error) = appended {
                    warn!(%error, "cannot write the output log");
                    return;
                }
            }
            Err(error) => {
                warn!(%error, "cannot read a command's output");
                return;
            }
        }
    }
}

async fn pump_pty(
    master: Arc<AsyncFd<OwnedFd>>,
    log: Arc<OutputLog>,
    last_output: Arc<AtomicI64>,
    started: Instant,
) {
    let mut buffer = vec![0; CHUNK_BYTES];
    loop {
        let Ok(mut ready) = master.readable().await else {
            return;
        };
        let read = ready.try_io(|fd| {
            let mut file = std::mem::ManuallyDrop::new(
                // SAFETY: the fd stays owned by `master`; ManuallyDrop keeps
                // this borrowed File from closing it.
                unsafe { std::fs::File::from_raw_fd(fd.as_raw_fd()) },
            );
            file.read(&mut buffer)
        });
        match read {
            Err(_would_block) => continue,
            Ok(Ok(0)) => return,
            Ok(Ok(n)) => {
                last_output.store(BUSY, Ordering::Relaxed);
                let appended = log
                    .append(Stream::Pty, Bytes::copy_from_slice(&buffer[..n]))
                    .await;
                last_output.store(started.elapsed().as_millis() as i64, Ordering::Relaxed);
                if appended.is_err() {
                    return;
                }
            }
            // EIO: every process holding the terminal's slave side is gone.
            Ok(Err(_)) => return,
        }
    }
}

async fn write_pty(master: &AsyncFd<OwnedFd>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut ready = master.writable().await?;
        // SAFETY: write reads `data` only.
        let written = ready.try_io(|fd| {
            let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match written {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(error)) => return Err(error),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

fn open_pty(rows: u16, cols: u16) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut master = -1;
    let mut slave = -1;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes the two fds; the other pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openpty returned two open fds that we now own.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on an fd we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    Ok((master, slave))
}

fn set_window_size(fd: &OwnedFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
