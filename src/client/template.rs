//! `paddock template build`: a directory sent as a build context, the
//! build's log printed as it comes, as `docker build` does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ClientArgs;
use crate::pb;
use crate::pb::build_template_request::Request as Up;
use crate::pb::build_template_response::Response as Down;
use crate::pb::template_service_client::TemplateServiceClient;

/// The bytes of one context message.
const CHUNK_BYTES: usize = 1 << 20;
/// Where a Dockerfile from outside the context goes in the archive.
const OUTSIDE_DOCKERFILE: &str = ".paddock.Dockerfile";

/// `paddock template …`.
#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// Build a template from a Dockerfile and a directory, as `paddock
    /// template build -f Dockerfile -t python-data .`: the directory is sent
    /// as the build context, the build runs on the server's engine, its log
    /// is printed here, and the template (a new one, or a new version) is
    /// named last.
    Build(BuildArgs),
}

/// `paddock template build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The Dockerfile [default: DIR/Dockerfile].
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// The template's name.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub name: String,
    /// A build argument, NAME=VALUE (repeatable).
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// The build context.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Runs `paddock template …`.
pub async fn template(client: &ClientArgs, command: TemplateCommand) -> anyhow::Result<ExitCode> {
    match command {
        TemplateCommand::Build(args) => build(client, args).await,
    }
}

async fn build(client: &ClientArgs, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot read the build context {}", args.dir.display()))?;
    if !dir.is_dir() {
        bail!("{} is not a directory", args.dir.display());
    }
    let file = args.file.clone().unwrap_or_else(|| dir.join("Dockerfile"));
    let file = file
        .canonicalize()
        .with_context(|| format!("cannot read the Dockerfile {}", file.display()))?;
    let (dockerfile, outside) = match file.strip_prefix(&dir) {
        Ok(inside) => (inside.to_string_lossy().into_owned(), None),
        Err(_) => (OUTSIDE_DOCKERFILE.to_owned(), Some(file.clone())),
    };
    let mut build_args = std::collections::HashMap::new();
    for pair in &args.build_args {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--build-arg {pair:?} is not NAME=VALUE"))?;
        build_args.insert(name.to_owned(), value.to_owned());
    }
    let header = pb::BuildTemplateRequest {
        request: Some(Up::Header(pb::BuildTemplateHeader {
            name: args.name.clone(),
            dockerfile,
            spec: None,
            build_args,
        })),
    };
    let (chunks, archive) = mpsc::channel::<Bytes>(4);
    let packing = tokio::task::spawn_blocking(move || pack(&dir, outside.as_deref(), chunks));
    let requests =
        futures::stream::iter([header]).chain(ReceiverStream::new(archive).map(|chunk| {
            pb::BuildTemplateRequest {
                request: Some(Up::Context(chunk)),
            }
        }));
    let connection = client.connect().await?;
    let mut made = None;
    let built = async {
        let mut answers = TemplateServiceClient::new(connection)
            .build_template(requests)
            .await?
            .into_inner();
        let mut stdout = std::io::stdout();
        while let Some(answer) = answers.message().await? {
            match answer.response {
                Some(Down::Log(line)) => writeln!(stdout, "{line}")?,
                Some(Down::Template(template)) => made = Some(template),
                None => {}
            }
        }
        anyhow::Ok(())
    }
    .await;
    let packed = packing.await.context("packing the build context")?;
    // The server's answer first: a pack cut short because the build failed
    // says less than the build's error.
    built?;
    packed.context("packing the build context")?;
    let Some(template) = made else {
        bail!("the server ended the build without a template");
    };
    println!(
        "Built template {}@{} (image {})",
        template.name,
        template.version,
        template.spec.map(|spec| spec.image).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes `dir` (and a Dockerfile from outside it) as a tar archive into
/// `chunks`, [`CHUNK_BYTES`] at a time. Symbolic links are archived as
/// links, never followed.
fn pack(dir: &Path, outside: Option<&Path>, chunks: mpsc::Sender<Bytes>) -> anyhow::Result<()> {
    let mut archive = tar::Builder::new(ChunkWriter {
        chunks,
        pending: Vec::with_capacity(CHUNK_BYTES),
    });
    archive.follow_symlinks(false);
    archive
        .append_dir_all(".", dir)
        .with_context(|| format!("archiving {}", dir.display()))?;
    if let Some(file) = outside {
        archive
            .append_path_with_name(file, OUTSIDE_DOCKERFILE)
            .with_context(|| format!("archiving {}", file.display()))?;
    }
    let mut writer = archive.into_inner()?;
    writer.flush()?;
    Ok(())
}

/// An `io::Write` that sends what it is given in chunks.
struct ChunkWriter {
    chunks: mpsc::Sender<Bytes>,
    pending: Vec<u8>,
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.chunks
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("the server stopped taking the build context"))
    }
}
