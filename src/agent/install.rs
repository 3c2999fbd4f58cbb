//! `paddock install-agent`: copies this very binary to a path, for a
//! provider that delivers the agent into a sandbox by running the Paddock
//! image once beside it (the Kubernetes provider's init container, which
//! has no shell and no `cp`).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::Context;

/// Settings of `paddock install-agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// Where the binary goes, such as /.paddock/bin/paddock. Written beside
    /// it first and renamed into place, so a reader never sees half a file.
    #[arg(value_name = "PATH")]
    pub to: PathBuf,
}

/// Copies the running binary to `args.to`, executable by everyone.
pub fn run(args: &InstallArgs) -> anyhow::Result<()> {
    let binary = std::fs::read("/proc/self/exe").context("cannot read this program's binary")?;
    let name = args
        .to
        .file_name()
        .with_context(|| format!("{} names no file", args.to.display()))?;
    let partial = args
        .to
        .with_file_name(format!(".{}.partial", name.to_string_lossy()));
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    file.write_all(&binary)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", partial.display()))?;
    std::fs::rename(&partial, &args.to)
        .with_context(|| format!("cannot move the binary to {}", args.to.display()))?;
    Ok(())
}
