//! What each tool of `paddock mcp` takes. The doc comments are the JSON
//! schema's descriptions: they are what an agent reads to fill the
//! arguments in.

use std::collections::BTreeMap;

use rmcp::schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct CreateSandboxArgs {
    /// A name for the sandbox. If one of your sandboxes already has this
    /// name, that sandbox is returned instead (get-or-create), so a task can
    /// come back to its sandbox.
    pub name: Option<String>,
    /// The container image to run, such as "python:3.12". Default: the
    /// server's default image, or the template's.
    pub image: Option<String>,
    /// A template of yours to make the sandbox from: "NAME" for its latest
    /// version or "NAME@VERSION". A template that keeps sandboxes warm gives
    /// one at once when nothing but name, env and timeout is set here.
    pub template: Option<String>,
    /// Environment variables every command in the sandbox sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Seconds the sandbox may live before it is stopped. Default: the
    /// server's.
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct SandboxArgs {
    /// The sandbox: its id ("sbx_…") or its name.
    pub sandbox: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RunCommandArgs {
    /// The sandbox: its id ("sbx_…") or its name.
    pub sandbox: String,
    /// A shell command line, run with /bin/sh -c, such as "pytest -q".
    pub command: String,
    /// Seconds before the command is killed. Default: 120.
    pub timeout_seconds: Option<f64>,
    /// The directory to run in. Default: the sandbox's working directory.
    pub workdir: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ReadFileArgs {
    /// The sandbox: its id ("sbx_…") or its name.
    pub sandbox: String,
    /// The file.
    pub path: String,
    /// The 1-based number of the first line to read. Default: 1.
    pub offset: Option<i64>,
    /// The most lines to read. Default: 2000.
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct WriteFileArgs {
    /// The sandbox: its id ("sbx_…") or its name.
    pub sandbox: String,
    /// The file; missing folders are made, an existing file is replaced.
    pub path: String,
    /// The whole new content.
    pub content: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct EditFileArgs {
    /// The sandbox: its id ("sbx_…") or its name.
    pub sandbox: String,
    /// The file.
    pub path: String,
    /// The exact text to replace, whitespace included. Without
    /// replace_all it must occur exactly once.
    pub old_text: String,
    /// The text to put in its place.
    pub new_text: String,
    /// Replace every occurrence rather than exactly one.
    #[serde(default)]
    pub replace_all: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ListFilesArgs {
    /// The sandbox: its id ("sbx_…") or its name.
    pub sandbox: String,
    /// The directory. Default: the sandbox's working directory.
    pub path: Option<String>,
    /// How deep: 1 lists the directory, 2 also its subdirectories, and so
    /// on. Default: 1.
    pub depth: Option<i32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct FindFilesArgs {
    /// The sandbox: its id ("sbx_…") or its name.
    pub sandbox: String,
    /// A glob such as "**/*.py" or "src/*.rs", matched against paths
    /// relative to `path`.
    pub pattern: String,
    /// The directory to search. Default: the sandbox's working directory.
    pub path: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct GrepArgs {
    /// The sandbox: its id ("sbx_…") or its name.
    pub sandbox: String,
    /// A regular expression, matched line by line.
    pub pattern: String,
    /// A file, or a directory searched recursively. Default: the sandbox's
    /// working directory.
    pub path: Option<String>,
    /// Only files matching this glob, such as "*.py".
    pub glob: Option<String>,
    /// Match without regard to case.
    #[serde(default)]
    pub ignore_case: bool,
    /// The most matching lines returned. Default: 100.
    pub limit: Option<i32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct UploadFileArgs {
    /// The sandbox: its id ("sbx_…") or its name.
    pub sandbox: String,
    /// The file on this machine (where the MCP server runs).
    pub local_path: String,
    /// Where it goes in the sandbox; an existing file is replaced.
    pub path: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct DownloadFileArgs {
    /// The sandbox: its id ("sbx_…") or its name.
    pub sandbox: String,
    /// The file in the sandbox.
    pub path: String,
    /// Where it goes on this machine (where the MCP server runs); an
    /// existing file is replaced.
    pub local_path: String,
}
