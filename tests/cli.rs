//! The command line: `paddock serve --help` documents every setting, bad
//! settings stop the server with a sentence before it binds anything,
//! commands take a sandbox's name or id, and `paddock exec -t` gives a real
//! terminal. The client's other commands (cp, logs, run, watch, -o json,
//! completions) are in `cli_client.rs`.

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn paddock(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(args)
        .env_remove("PADDOCK_LISTEN")
        .env_remove("PADDOCK_ADDR")
        .env_remove("PADDOCK_API_KEY")
        // No developer's client config file.
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .expect("run paddock")
}

#[test]
fn serve_help_documents_every_setting_and_its_variable() {
    let output = paddock(&["serve", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, variable) in [
        ("--config", "PADDOCK_CONFIG"),
        ("--listen", "PADDOCK_LISTEN"),
        ("--data-dir", "PADDOCK_DATA_DIR"),
        ("--database-url", "PADDOCK_DATABASE_URL"),
        ("--provider", "PADDOCK_PROVIDER"),
        ("--default-timeout", "PADDOCK_DEFAULT_TIMEOUT"),
        ("--max-timeout", "PADDOCK_MAX_TIMEOUT"),
        ("--provider-call-timeout", "PADDOCK_PROVIDER_CALL_TIMEOUT"),
        ("--reap-interval", "PADDOCK_REAP_INTERVAL"),
        ("--shutdown-grace", "PADDOCK_SHUTDOWN_GRACE"),
        ("--log-format", "PADDOCK_LOG_FORMAT"),
        ("--log", "PADDOCK_LOG"),
        ("--agent-binary", "PADDOCK_AGENT_BINARY"),
        (
            "--max-commands-per-sandbox",
            "PADDOCK_MAX_COMMANDS_PER_SANDBOX",
        ),
        ("--max-commands", "PADDOCK_MAX_COMMANDS"),
        ("--command-output-budget", "PADDOCK_COMMAND_OUTPUT_BUDGET"),
        ("--auth", "PADDOCK_AUTH"),
        ("--open-reflection", "PADDOCK_OPEN_REFLECTION"),
        ("--grpc-web", "PADDOCK_GRPC_WEB"),
        ("--grpc-web-origins", "PADDOCK_GRPC_WEB_ORIGINS"),
        ("--key-rate-limit", "PADDOCK_KEY_RATE_LIMIT"),
        ("--tls-cert", "PADDOCK_TLS_CERT"),
        ("--tls-key", "PADDOCK_TLS_KEY"),
        ("--tls-client-ca", "PADDOCK_TLS_CLIENT_CA"),
        ("--tls-reload-interval", "PADDOCK_TLS_RELOAD_INTERVAL"),
        (
            "--quota-running-sandboxes",
            "PADDOCK_QUOTA_RUNNING_SANDBOXES",
        ),
        ("--quota-commands", "PADDOCK_QUOTA_COMMANDS"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
        assert!(help.contains(variable), "--help lacks {variable}:\n{help}");
    }
    assert!(
        help.contains("127.0.0.1:50051"),
        "the default address is shown"
    );
    assert!(
        !help.contains("test-process-create-delay"),
        "test knobs stay hidden"
    );
}

#[test]
fn bad_settings_are_refused_with_a_sentence() {
    for (args, expected) in [
        (
            &["serve", "--listen", "nowhere"][..],
            "neither HOST:PORT nor unix:PATH",
        ),
        (
            &["serve", "--provider", "kvm"][..],
            "provider \"kvm\" is unknown",
        ),
        (
            &["serve", "--default-timeout", "soon"][..],
            "default_timeout \"soon\"",
        ),
        (
            &["serve", "--command-output-budget", "1MiB"][..],
            "below the least, 8MiB",
        ),
    ] {
        let output = paddock(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// What a terminal's master side has read so far, filled by a thread.
struct Screen(Arc<Mutex<Vec<u8>>>);

impl Screen {
    fn follow(mut master: std::fs::File) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let filling = seen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            // EIO once the last process holding the terminal is gone.
            while let Ok(n @ 1..) = master.read(&mut buffer) {
                filling.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Self(seen)
    }

    /// Waits until `text` has appeared `times` times in all.
    fn wait_for(&self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let seen = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
            if seen.matches(text).count() >= times {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never came; the terminal shows {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn commands_take_a_sandboxs_name_or_its_id() {
    let data = tempfile::tempdir().unwrap();
    let server = common::spawned::ServerProcess::spawn(data.path());
    let url = server.url();
    let created = paddock(&["sandbox", "create", "--server", &url, "--name", "newcomer"]);
    assert!(created.status.success(), "{created:?}");
    let id = String::from_utf8(created.stdout).unwrap().trim().to_owned();

    let shown = paddock(&["sandbox", "get", "--server", &url, "newcomer"]);
    assert!(shown.status.success(), "{shown:?}");
    let shown = String::from_utf8(shown.stdout).unwrap();
    assert!(shown.contains(&format!("id:          {id}")), "{shown}");
    let ran = paddock(&["exec", "--server", &url, "newcomer", "--", "echo", "hi"]);
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "hi\n");
    let by_id = paddock(&["exec", "--server", &url, &id, "--", "echo", "by id"]);
    assert_eq!(String::from_utf8_lossy(&by_id.stdout), "by id\n");

    let unknown = paddock(&["exec", "--server", &url, "stranger", "--", "true"]);
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        said.contains("no sandbox of yours is named \"stranger\""),
        "{said}"
    );

    let stopped = paddock(&["sandbox", "stop", "--server", &url, "newcomer"]);
    assert!(stopped.status.success(), "{stopped:?}");
    assert_eq!(
        String::from_utf8_lossy(&stopped.stdout),
        format!("{id} STOPPED\n")
    );
    let deleted = paddock(&["sandbox", "delete", "--server", &url, "newcomer"]);
    assert!(deleted.status.success(), "{deleted:?}");
}

#[test]
fn exec_with_a_terminal_is_raw_sized_resized_and_exits_with_the_command() {
    let data = tempfile::tempdir().unwrap();
    let server = common::spawned::ServerProcess::spawn(data.path());
    let url = server.url();
    let created = paddock(&["sandbox", "create", "--server", &url]);
    assert!(created.status.success(), "{created:?}");
    let id = String::from_utf8(created.stdout).unwrap().trim().to_owned();

    // A pseudo-terminal of 33 rows and 99 columns as the CLI's terminal.
    let (mut master_fd, mut slave_fd) = (-1, -1);
    // SAFETY: openpty fills the two descriptors; the size is read only.
    let opened = unsafe {
        libc::openpty(
            &mut master_fd,
            &mut slave_fd,
            std::ptr::null_mut(),
            std::ptr::null(),
            &winsize(33, 99),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (master, slave) = unsafe {
        (
            OwnedFd::from_raw_fd(master_fd),
            OwnedFd::from_raw_fd(slave_fd),
        )
    };
    let mut cli = Command::new(env!("CARGO_BIN_EXE_paddock"));
    cli.args(["exec", "-it", "--server", &url, &id, "--", "sh"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cli.pre_exec(|| {
            // Its own session with the terminal as the controlling one, so
            // that resizing it sends the CLI SIGWINCH.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cli.spawn().expect("run paddock exec -it");
    let mut keyboard = std::fs::File::from(master.try_clone().unwrap());
    let screen = Screen::follow(std::fs::File::from(master));

    keyboard.write_all(b"stty size\n").unwrap();
    screen.wait_for("33 99", 1);

    // SAFETY: TIOCSWINSZ reads a winsize.
    let resized = unsafe { libc::ioctl(keyboard.as_raw_fd(), libc::TIOCSWINSZ, &winsize(40, 120)) };
    assert_eq!(resized, 0);
    // The resize travels as a signal, then a message: ask until it shows.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        keyboard.write_all(b"stty size\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let seen = String::from_utf8_lossy(&screen.0.lock().unwrap()).into_owned();
        if seen.contains("40 120") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the resize never arrived: {seen:?}"
        );
    }

    // Raw mode: Ctrl-C is a key for the remote command, not the end of the
    // CLI; the shell carries on after the interrupted command. The command
    // says when it is ready for the interrupt (its trap set, it the
    // foreground job), so ^C never reaches the shell first.
    keyboard
        .write_all(
            b"sh -c 'trap \"echo interrupted-$((6*7)); exit 130\" INT; \
              echo ready-$((1+1)); sleep 30'\n",
        )
        .unwrap();
    screen.wait_for("ready-2", 1);
    keyboard.write_all(b"\x03").unwrap();
    screen.wait_for("interrupted-42", 1);
    keyboard.write_all(b"echo after-$((40+2))\n").unwrap();
    screen.wait_for("after-42", 1);

    keyboard.write_all(b"exit 4\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "paddock exec did not end with its shell"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(4), "the shell's exit code");
}
