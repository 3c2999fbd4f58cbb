//! `paddock agent-bridge`: joins its own stdin and stdout to the agent's Unix
//! socket, byte for byte. A provider that can only run a process in the
//! sandbox and talk to its stdio (a Docker exec, a Kubernetes exec) starts one
//! bridge per connection and speaks HTTP/2 to the agent through it.
//!
//! Plain threads and blocking I/O: a bridge carries one connection, and a
//! blocking read hands bytes on sooner than a poll loop would.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Settings of `paddock agent-bridge`.
#[derive(Debug, Clone, clap::Args)]
pub struct BridgeArgs {
    /// The agent's Unix socket.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// How long to wait for the socket to accept connections (the agent may
    /// still be starting).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

const BUFFER: usize = 64 << 10;

/// Runs the bridge until either side closes. Returns an error when the agent
/// cannot be reached in time.
pub fn run(args: &BridgeArgs) -> anyhow::Result<()> {
    let agent = connect(&args.socket, args.wait)?;
    let mut to_agent = agent.try_clone().context("cannot clone the agent socket")?;
    let mut from_agent = agent;
    std::thread::spawn(move || {
        let _ = pump(&mut std::io::stdin().lock(), &mut to_agent);
        // The caller is done sending: let the agent see the end too.
        let _ = to_agent.shutdown(std::net::Shutdown::Write);
    });
    // Downstream on this thread: when the agent closes, the bridge is done,
    // whatever the caller is still sending (returning ends the process and
    // with it the upstream thread).
    pump(&mut from_agent, &mut std::io::stdout().lock())
        .map(drop)
        .context("the connection to the agent broke")
}

fn connect(socket: &Path, wait: Duration) -> anyhow::Result<UnixStream> {
    let deadline = Instant::now() + wait;
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(error) => bail!(
                "cannot reach the agent at {} within {}: {error}",
                socket.display(),
                humantime::format_duration(wait)
            ),
        }
    }
}

/// Copies until the end of `from`, flushing after every read so that small
/// HTTP/2 frames are not held back.
fn pump(from: &mut impl Read, to: &mut impl Write) -> std::io::Result<u64> {
    let mut buffer = vec![0u8; BUFFER];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buffer[..n])?;
        to.flush()?;
        total += n as u64;
    }
}
