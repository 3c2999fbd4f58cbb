//! The tools `paddock mcp` offers: each one call or two to the Paddock
//! server, answered as text an agent can act on.

use std::fmt::Write as _;

use rmcp::handler::server::wrapper::Parameters;

use super::PaddockMcp;
use super::answers::{Answer, MAX_RUN_OUTPUT, answer, named, run_report};
use super::args::{
    CreateSandboxArgs, DownloadFileArgs, EditFileArgs, FindFilesArgs, GrepArgs, ListFilesArgs,
    ReadFileArgs, RunCommandArgs, SandboxArgs, UploadFileArgs, WriteFileArgs,
};
use crate::client::Connection;
use crate::client::commands::{proto_duration, state_name};
use crate::client::transfer;
use crate::pb;
use crate::pb::exec_service_client::ExecServiceClient;
use crate::pb::file_service_client::FileServiceClient;
use crate::pb::sandbox_service_client::SandboxServiceClient;

/// How long `run_command` lets a command run when the agent names no limit.
const DEFAULT_RUN_TIMEOUT_SECONDS: f64 = 120.0;
/// The most lines `read_file` returns when the agent names no limit.
const DEFAULT_READ_LINES: i64 = 2000;
/// The most bytes of one `read_file` answer.
const MAX_READ_BYTES: i64 = 256 << 10;

#[rmcp::tool_router]
impl PaddockMcp {
    /// The server over `connection`.
    pub fn new(connection: Connection) -> Self {
        Self {
            connection,
            tool_router: Self::tool_router(),
        }
    }

    fn sandboxes(&self) -> SandboxServiceClient<Connection> {
        SandboxServiceClient::new(self.connection.clone())
    }

    fn exec(&self) -> ExecServiceClient<Connection> {
        ExecServiceClient::new(self.connection.clone())
    }

    fn files(&self) -> FileServiceClient<Connection> {
        FileServiceClient::new(self.connection.clone())
    }

    async fn id_of(&self, sandbox: &str) -> anyhow::Result<String> {
        crate::client::commands::sandbox_id_of(&mut self.sandboxes(), sandbox).await
    }

    #[rmcp::tool(
        description = "Create a sandbox to run code in, or return the one of yours with the \
                       given name. Answers with its id, name and state."
    )]
    async fn create_sandbox(&self, Parameters(args): Parameters<CreateSandboxArgs>) -> Answer {
        answer(async {
            let request = pb::CreateSandboxRequest {
                if_exists: if args.name.is_some() {
                    pb::IfExists::ReturnExisting.into()
                } else {
                    pb::IfExists::Unspecified.into()
                },
                name: args.name,
                image: args.image.unwrap_or_default(),
                template: args.template.unwrap_or_default(),
                env: args.env.into_iter().collect(),
                timeout: args.timeout_seconds.map(|seconds| prost_types::Duration {
                    seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
                ..Default::default()
            };
            let made = self.sandboxes().create_sandbox(request).await?.into_inner();
            let sandbox = made.sandbox.unwrap_or_default();
            let mut text = format!(
                "{} sandbox {}{} ({})",
                if made.created { "created" } else { "found" },
                sandbox.id,
                named(&sandbox.name),
                state_name(sandbox.state()),
            );
            if !sandbox.state_reason.is_empty() {
                let _ = write!(text, ": {}", sandbox.state_reason);
            }
            Ok(text)
        })
        .await
    }

    #[rmcp::tool(description = "Delete a sandbox and everything in it.")]
    async fn delete_sandbox(&self, Parameters(args): Parameters<SandboxArgs>) -> Answer {
        answer(async {
            let sandbox_id = self.id_of(&args.sandbox).await?;
            self.sandboxes()
                .delete_sandbox(pb::DeleteSandboxRequest {
                    sandbox_id: sandbox_id.clone(),
                })
                .await?;
            Ok(format!("deleted sandbox {sandbox_id}"))
        })
        .await
    }

    #[rmcp::tool(description = "List your sandboxes that are not deleted: id, name, state.")]
    async fn list_sandboxes(&self) -> Answer {
        answer(async {
            let listed = self
                .sandboxes()
                .list_sandboxes(pb::ListSandboxesRequest {
                    page_size: 1000,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if listed.sandboxes.is_empty() {
                return Ok("no sandboxes".into());
            }
            let mut text = String::new();
            for sandbox in &listed.sandboxes {
                let _ = writeln!(
                    text,
                    "{}{} ({})",
                    sandbox.id,
                    named(&sandbox.name),
                    state_name(sandbox.state())
                );
            }
            Ok(text)
        })
        .await
    }

    #[rmcp::tool(
        description = "Run a shell command in a sandbox and wait for it to end (default limit \
                       120 s). Answers with the exit code, stdout and stderr; each is cut at \
                       30000 bytes, and the answer says when it was cut."
    )]
    async fn run_command(&self, Parameters(args): Parameters<RunCommandArgs>) -> Answer {
        answer(async {
            let sandbox_id = self.id_of(&args.sandbox).await?;
            let seconds = args.timeout_seconds.unwrap_or(DEFAULT_RUN_TIMEOUT_SECONDS);
            let timeout = std::time::Duration::try_from_secs_f64(seconds).map_err(|_| {
                anyhow::anyhow!("timeout_seconds must be a positive number, not {seconds}")
            })?;
            let ran = self
                .exec()
                .run_command(pb::RunCommandRequest {
                    sandbox_id,
                    spec: Some(pb::CommandSpec {
                        shell: args.command,
                        workdir: args.workdir.unwrap_or_default(),
                        timeout: Some(proto_duration(timeout)?),
                        ..Default::default()
                    }),
                    max_output_bytes: MAX_RUN_OUTPUT,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(run_report(&ran, seconds))
        })
        .await
    }

    #[rmcp::tool(
        description = "Read a text file in a sandbox, by lines: each line comes numbered \
                       (\"   12\\tline\"); the numbers are not part of the file. Use offset and \
                       limit to read a long file in parts."
    )]
    async fn read_file(&self, Parameters(args): Parameters<ReadFileArgs>) -> Answer {
        answer(async {
            let sandbox_id = self.id_of(&args.sandbox).await?;
            let read = self
                .files()
                .read_file(pb::ReadFileRequest {
                    sandbox_id,
                    path: args.path,
                    offset: args.offset.unwrap_or(1),
                    limit: args.limit.unwrap_or(DEFAULT_READ_LINES),
                    max_bytes: MAX_READ_BYTES,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let content = String::from_utf8_lossy(&read.content);
            let mut text = String::new();
            for (number, line) in (read.first_line.max(1)..).zip(content.lines()) {
                let _ = writeln!(text, "{number:>6}\t{line}");
            }
            if read.lines == 0 {
                let _ = writeln!(text, "(no lines here; the file has {} bytes)", read.size);
            } else if read.truncated {
                let next = read.first_line + read.lines;
                let _ = writeln!(
                    text,
                    "(more follows: read on with offset={next}; the file has {} bytes)",
                    read.size
                );
            }
            Ok(text)
        })
        .await
    }

    #[rmcp::tool(
        description = "Write a text file in a sandbox, replacing it if it exists and making \
                       missing folders."
    )]
    async fn write_file(&self, Parameters(args): Parameters<WriteFileArgs>) -> Answer {
        answer(async {
            let sandbox_id = self.id_of(&args.sandbox).await?;
            let bytes = args.content.len();
            let written = self
                .files()
                .write_file(pb::WriteFileRequest {
                    sandbox_id,
                    path: args.path,
                    content: args.content.into_bytes(),
                    overwrite: true,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let path = written.info.map(|info| info.path).unwrap_or_default();
            Ok(format!("wrote {bytes} bytes to {path}"))
        })
        .await
    }

    #[rmcp::tool(
        description = "Edit a file in a sandbox by replacing old_text with new_text. old_text \
                       must occur exactly once unless replace_all is true."
    )]
    async fn edit_file(&self, Parameters(args): Parameters<EditFileArgs>) -> Answer {
        answer(async {
            let sandbox_id = self.id_of(&args.sandbox).await?;
            let edited = self
                .files()
                .edit_file(pb::EditFileRequest {
                    sandbox_id,
                    path: args.path.clone(),
                    old_text: args.old_text,
                    new_text: args.new_text,
                    replace_all: args.replace_all,
                })
                .await?
                .into_inner();
            let times = match edited.replacements {
                1 => "once".to_owned(),
                n => format!("{n} times"),
            };
            Ok(format!("edited {}: replaced {times}", args.path))
        })
        .await
    }

    #[rmcp::tool(
        description = "List a directory in a sandbox: one entry per line, folders ending in \
                       '/', files with their size."
    )]
    async fn list_files(&self, Parameters(args): Parameters<ListFilesArgs>) -> Answer {
        answer(async {
            let sandbox_id = self.id_of(&args.sandbox).await?;
            let listed = self
                .files()
                .list_dir(pb::ListDirRequest {
                    sandbox_id,
                    path: args.path.unwrap_or_default(),
                    depth: args.depth.unwrap_or(1),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let mut text = String::new();
            for entry in &listed.entries {
                match entry.r#type() {
                    pb::FileType::Directory => {
                        let _ = writeln!(text, "{}/", entry.path);
                    }
                    pb::FileType::Symlink => {
                        let _ = writeln!(text, "{} -> {}", entry.path, entry.link_target);
                    }
                    _ => {
                        let _ = writeln!(text, "{} ({} bytes)", entry.path, entry.size);
                    }
                }
            }
            if listed.entries.is_empty() {
                text.push_str("(empty)\n");
            }
            if listed.truncated {
                text.push_str("(more entries were left out)\n");
            }
            Ok(text)
        })
        .await
    }

    #[rmcp::tool(description = "Find files in a sandbox whose paths match a glob.")]
    async fn find_files(&self, Parameters(args): Parameters<FindFilesArgs>) -> Answer {
        answer(async {
            let sandbox_id = self.id_of(&args.sandbox).await?;
            let found = self
                .files()
                .find_files(pb::FindFilesRequest {
                    sandbox_id,
                    path: args.path.unwrap_or_default(),
                    pattern: args.pattern,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let mut text = found.paths.join("\n");
            if found.paths.is_empty() {
                text.push_str("no files match");
            }
            if found.truncated {
                text.push_str("\n(more matches were left out)");
            }
            Ok(text)
        })
        .await
    }

    #[rmcp::tool(
        description = "Search files in a sandbox for a regular expression. Answers \
                       path:line:text for each matching line."
    )]
    async fn grep(&self, Parameters(args): Parameters<GrepArgs>) -> Answer {
        answer(async {
            let sandbox_id = self.id_of(&args.sandbox).await?;
            let found = self
                .files()
                .grep(pb::GrepRequest {
                    sandbox_id,
                    path: args.path.unwrap_or_default(),
                    pattern: args.pattern,
                    glob: args.glob.unwrap_or_default(),
                    ignore_case: args.ignore_case,
                    limit: args.limit.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let mut text = String::new();
            for hit in &found.matches {
                let _ = writeln!(text, "{}:{}:{}", hit.path, hit.line_number, hit.line);
            }
            if found.matches.is_empty() {
                text.push_str("no matches\n");
            }
            if found.truncated {
                text.push_str("(more matches were left out; raise limit)\n");
            }
            Ok(text)
        })
        .await
    }

    #[rmcp::tool(description = "Copy a file from this machine into a sandbox.")]
    async fn upload_file(&self, Parameters(args): Parameters<UploadFileArgs>) -> Answer {
        answer(async {
            let sandbox_id = self.id_of(&args.sandbox).await?;
            let local = std::path::Path::new(&args.local_path);
            let uploaded =
                transfer::upload_file(self.files(), &sandbox_id, local, &args.path, false).await?;
            let info = uploaded.info.unwrap_or_default();
            Ok(format!(
                "uploaded {} bytes to {} (sha256 {})",
                info.size, info.path, uploaded.sha256
            ))
        })
        .await
    }

    #[rmcp::tool(description = "Copy a file from a sandbox to this machine.")]
    async fn download_file(&self, Parameters(args): Parameters<DownloadFileArgs>) -> Answer {
        answer(async {
            let sandbox_id = self.id_of(&args.sandbox).await?;
            let local = std::path::Path::new(&args.local_path);
            let (_, received) =
                transfer::download_file(self.files(), &sandbox_id, &args.path, local, false)
                    .await?;
            Ok(format!(
                "downloaded {} ({received} bytes) to {}",
                args.path, args.local_path
            ))
        })
        .await
    }
}
