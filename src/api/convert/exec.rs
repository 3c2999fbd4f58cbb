//! Validation of ExecService requests. The messages go on to the sandbox's
//! agent as they are, once every rule holds.

use crate::error::{Error, Result};
use crate::pb;
use crate::sandbox::rules;
use crate::signals;

/// The most bytes of stdin in one message.
pub const MAX_STDIN_BYTES: usize = 1 << 20;
/// The most bytes RunCommand returns per output stream.
pub const MAX_RUN_OUTPUT_BYTES: i64 = 1 << 20;
/// The most bytes of a command line.
const MAX_COMMAND_BYTES: usize = 128 * 1024;
/// The largest terminal side.
const MAX_TERMINAL_SIDE: u32 = 1000;

/// A required command id, checked for shape.
pub fn command_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid_argument(field, "is required"));
    }
    let valid = id.strip_prefix("cmd_").is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if valid {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            field,
            format!(
                "{:?} is not a command id (\"cmd_\" and 32 lowercase hex digits)",
                rules::shorten(id)
            ),
        ))
    }
}

/// A signal name or number.
pub fn signal(field: &str, name: &str) -> Result<()> {
    signals::parse(name).map(|_| ()).ok_or_else(|| {
        Error::invalid_argument(
            field,
            format!(
                "{:?} is not a signal; use a name such as SIGINT or a number from 1 to 64",
                rules::shorten(name)
            ),
        )
    })
}

fn argv_and_shell(prefix: &str, command: &[String], shell: &str) -> Result<()> {
    match (command.is_empty(), shell.is_empty()) {
        (true, true) => {
            return Err(Error::invalid_argument(
                &format!("{prefix}command"),
                "set command (a program and its arguments) or shell (a command line)",
            ));
        }
        (false, false) => {
            return Err(Error::invalid_argument(
                &format!("{prefix}shell"),
                "set command or shell, not both",
            ));
        }
        _ => {}
    }
    if command.first().is_some_and(String::is_empty) {
        return Err(Error::invalid_argument(
            &format!("{prefix}command"),
            "the program name must not be empty",
        ));
    }
    let total: usize = command.iter().map(String::len).sum::<usize>() + shell.len();
    if total > MAX_COMMAND_BYTES {
        return Err(Error::invalid_argument(
            &format!("{prefix}command"),
            format!("is {total} bytes; at most {MAX_COMMAND_BYTES} are allowed"),
        ));
    }
    if command.iter().any(|a| a.contains('\0')) || shell.contains('\0') {
        return Err(Error::invalid_argument(
            &format!("{prefix}command"),
            "must not contain a NUL byte",
        ));
    }
    Ok(())
}

fn common(
    prefix: &str,
    env: &std::collections::HashMap<String, String>,
    workdir: &str,
    timeout: Option<&prost_types::Duration>,
) -> Result<()> {
    let env: std::collections::BTreeMap<_, _> =
        env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    rules::check_env(&format!("{prefix}env"), &env)?;
    if !workdir.is_empty() {
        rules::check_absolute_path(&format!("{prefix}workdir"), workdir)?;
    }
    if let Some(timeout) = timeout {
        let positive = timeout.seconds > 0 || (timeout.seconds == 0 && timeout.nanos > 0);
        if timeout.seconds < 0 || timeout.nanos < 0 || !positive {
            return Err(Error::invalid_argument(
                &format!("{prefix}timeout"),
                "must be positive; leave it unset for no limit",
            ));
        }
    }
    Ok(())
}

/// A command spec, under the field path `prefix` (such as "start.spec.").
pub fn spec(prefix: &str, spec: Option<&pb::CommandSpec>) -> Result<()> {
    let Some(pb::CommandSpec {
        command,
        shell,
        env,
        workdir,
        user,
        tty: _,
        rows,
        cols,
        timeout,
    }) = spec
    else {
        return Err(Error::invalid_argument(
            prefix.trim_end_matches('.'),
            "is required",
        ));
    };
    argv_and_shell(prefix, command, shell)?;
    common(prefix, env, workdir, timeout.as_ref())?;
    if !user.is_empty() {
        rules::check_user(&format!("{prefix}user"), user)?;
    }
    terminal_size(prefix, *rows, *cols, true)
}

fn terminal_size(prefix: &str, rows: u32, cols: u32, zero_allowed: bool) -> Result<()> {
    for (name, value) in [("rows", rows), ("cols", cols)] {
        let low = if zero_allowed { 0 } else { 1 };
        if value < low || value > MAX_TERMINAL_SIDE {
            return Err(Error::invalid_argument(
                &format!("{prefix}{name}"),
                format!("{value} is out of range: use 1 to {MAX_TERMINAL_SIDE}"),
            ));
        }
    }
    Ok(())
}

/// A RunCommand request; returns its sandbox id.
pub fn run_request(request: &pb::RunCommandRequest) -> Result<String> {
    let pb::RunCommandRequest {
        sandbox_id,
        spec: command_spec,
        stdin,
        max_output_bytes,
    } = request;
    let id = super::fields::sandbox_id("sandbox_id", sandbox_id.clone())?;
    spec("spec.", command_spec.as_ref())?;
    if command_spec
        .as_ref()
        .is_some_and(|spec| spec.tty || spec.rows != 0 || spec.cols != 0)
    {
        return Err(Error::invalid_argument(
            "spec.tty",
            "RunCommand answers with stdout and stderr apart, so it runs no terminal; use Exec for one",
        ));
    }
    if stdin.len() > MAX_STDIN_BYTES {
        return Err(Error::invalid_argument(
            "stdin",
            format!(
                "is {} bytes; at most {MAX_STDIN_BYTES} are allowed",
                stdin.len()
            ),
        ));
    }
    if !(0..=MAX_RUN_OUTPUT_BYTES).contains(max_output_bytes) {
        return Err(Error::invalid_argument(
            "max_output_bytes",
            format!(
                "{max_output_bytes} is out of range: use 1 to {MAX_RUN_OUTPUT_BYTES}, or 0 for the default"
            ),
        ));
    }
    Ok(id)
}

/// The first message of an Exec stream; returns its sandbox id.
pub fn exec_first(request: &pb::ExecRequest) -> Result<String> {
    use pb::exec_request::Request as R;
    match &request.request {
        Some(R::Start(pb::ExecStart {
            sandbox_id,
            spec: command_spec,
            on_disconnect,
        })) => {
            let id = super::fields::sandbox_id("start.sandbox_id", sandbox_id.clone())?;
            spec("start.spec.", command_spec.as_ref())?;
            pb::OnDisconnect::try_from(*on_disconnect).map_err(|_| {
                Error::invalid_argument(
                    "start.on_disconnect",
                    format!("{on_disconnect} is not a known value"),
                )
            })?;
            Ok(id)
        }
        Some(R::Attach(pb::ExecAttach {
            sandbox_id,
            command_id: id,
            after_seq,
        })) => {
            let sandbox = super::fields::sandbox_id("attach.sandbox_id", sandbox_id.clone())?;
            command_id("attach.command_id", id)?;
            if *after_seq < 0 {
                return Err(Error::invalid_argument(
                    "attach.after_seq",
                    "must be 0 or a seq from an earlier output chunk",
                ));
            }
            Ok(sandbox)
        }
        _ => Err(Error::invalid_argument(
            "request",
            "the first message of an Exec stream must be start or attach",
        )),
    }
}

/// A message after the first on an Exec stream.
pub fn exec_follow_up(request: &pb::ExecRequest) -> Result<()> {
    use pb::exec_request::Request as R;
    match &request.request {
        Some(R::Stdin(data)) if data.len() > MAX_STDIN_BYTES => Err(Error::invalid_argument(
            "stdin",
            format!(
                "is {} bytes; at most {MAX_STDIN_BYTES} per message",
                data.len()
            ),
        )),
        Some(R::Stdin(_)) | Some(R::CloseStdin(_)) => Ok(()),
        Some(R::Resize(pb::Resize { rows, cols })) => terminal_size("resize.", *rows, *cols, false),
        Some(R::Signal(pb::Signal { name })) => signal("signal.name", name),
        Some(R::Start(_)) | Some(R::Attach(_)) => Err(Error::invalid_argument(
            "request",
            "start and attach may only be the first message of an Exec stream",
        )),
        None => Err(Error::invalid_argument("request", "is empty")),
    }
}

/// A StartCommand request; returns its sandbox id.
pub fn start_command(request: &pb::StartCommandRequest) -> Result<String> {
    let pb::StartCommandRequest {
        sandbox_id,
        spec: command_spec,
    } = request;
    let id = super::fields::sandbox_id("sandbox_id", sandbox_id.clone())?;
    spec("spec.", command_spec.as_ref())?;
    Ok(id)
}

/// A GetCommand request; returns its sandbox id.
pub fn get_command(request: &pb::GetCommandRequest) -> Result<String> {
    let pb::GetCommandRequest {
        sandbox_id,
        command_id: id,
    } = request;
    let sandbox = super::fields::sandbox_id("sandbox_id", sandbox_id.clone())?;
    command_id("command_id", id)?;
    Ok(sandbox)
}

/// A ListCommands request; returns its sandbox id.
pub fn list_commands(request: &pb::ListCommandsRequest) -> Result<String> {
    let pb::ListCommandsRequest { sandbox_id, states } = request;
    let id = super::fields::sandbox_id("sandbox_id", sandbox_id.clone())?;
    for state in states {
        match pb::CommandState::try_from(*state) {
            Ok(pb::CommandState::Unspecified) | Err(_) => {
                return Err(Error::invalid_argument(
                    "states",
                    format!("{state} is not a command state to filter by"),
                ));
            }
            Ok(_) => {}
        }
    }
    Ok(id)
}

/// A SignalCommand request; returns its sandbox id.
pub fn signal_command(request: &pb::SignalCommandRequest) -> Result<String> {
    let pb::SignalCommandRequest {
        sandbox_id,
        command_id: id,
        signal: name,
    } = request;
    let sandbox = super::fields::sandbox_id("sandbox_id", sandbox_id.clone())?;
    command_id("command_id", id)?;
    signal("signal", name)?;
    Ok(sandbox)
}

/// A KillProcesses request (no signal: SIGKILL); returns its sandbox id.
pub fn kill_processes(request: &pb::KillProcessesRequest) -> Result<String> {
    let pb::KillProcessesRequest {
        sandbox_id,
        signal: name,
    } = request;
    let id = super::fields::sandbox_id("sandbox_id", sandbox_id.clone())?;
    if !name.is_empty() {
        signal("signal", name)?;
    }
    Ok(id)
}
