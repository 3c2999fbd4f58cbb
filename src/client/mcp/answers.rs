//! How `paddock mcp`'s tools answer: text an agent reads, and refusals as
//! tool errors carrying the server's sentence.

use std::fmt::Write as _;

use rmcp::model::{CallToolResult, ContentBlock};

use crate::pb;

/// The most bytes of stdout and of stderr `run_command` shows: enough for a
/// build's errors, small enough for an agent's context.
pub const MAX_RUN_OUTPUT: i64 = 30_000;

/// A tool's answer: text, or a tool error the agent sees.
pub type Answer = Result<CallToolResult, rmcp::ErrorData>;

fn ok(text: impl Into<String>) -> Answer {
    Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
}

fn refused(text: impl Into<String>) -> Answer {
    Ok(CallToolResult::error(vec![ContentBlock::text(text)]))
}

/// A failure as the agent should read it: the server's sentence.
fn failed(error: anyhow::Error) -> Answer {
    let text = match error.downcast_ref::<tonic::Status>() {
        Some(status) if status.code() == tonic::Code::Unavailable => {
            format!("the Paddock server is unavailable: {}", status.message())
        }
        Some(status) if !status.message().is_empty() => status.message().to_owned(),
        Some(status) => format!("{:?}", status.code()),
        None => format!("{error:#}"),
    };
    refused(text)
}

/// Runs a tool's body and turns its error into a tool error.
pub async fn answer(body: impl Future<Output = anyhow::Result<String>>) -> Answer {
    match body.await {
        Ok(text) => ok(text),
        Err(error) => failed(error),
    }
}

pub fn named(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" named {name:?}")
    }
}

/// How a command ran, as `run_command` tells it.
pub fn run_report(ran: &pb::RunCommandResponse, timeout_seconds: f64) -> String {
    let mut text = match (ran.exit_code, ran.timed_out, ran.signal.as_str()) {
        (_, true, _) => format!("timed out after {timeout_seconds} s and was killed\n"),
        (Some(code), _, _) => format!("exit code {code}\n"),
        (None, _, signal) => format!("ended by signal {signal}\n"),
    };
    for (name, output, cut) in [
        ("stdout", &ran.stdout, ran.stdout_truncated),
        ("stderr", &ran.stderr, ran.stderr_truncated),
    ] {
        if output.is_empty() {
            continue;
        }
        let _ = writeln!(text, "--- {name} ---");
        text.push_str(&String::from_utf8_lossy(output));
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if cut {
            let _ = writeln!(
                text,
                "[{name} cut at {MAX_RUN_OUTPUT} bytes; the full output is in command {}]",
                ran.command_id
            );
        }
    }
    text
}
