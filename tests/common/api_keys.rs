//! API keys for tests: made with the real `paddock keys` command on a
//! server's database, and sent as `authorization` on every call.

use std::path::Path;
use std::process::Command;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::TestServer;

/// The database `paddock keys` works on: a server's, given as the server
/// was (its data directory's SQLite file, or its database URL).
pub enum Database<'a> {
    DataDir(&'a Path),
    Url(&'a str),
}

impl<'a> From<&'a TestServer> for Database<'a> {
    fn from(server: &'a TestServer) -> Self {
        match &server.database_url {
            Some(url) => Self::Url(url),
            None => Self::DataDir(&server.data_dir),
        }
    }
}

impl<'a> From<&'a Path> for Database<'a> {
    fn from(data_dir: &'a Path) -> Self {
        Self::DataDir(data_dir)
    }
}

/// Runs `paddock keys ARGS` on `database`; returns stdout, or the stderr of
/// a failure.
pub fn keys<'a>(database: impl Into<Database<'a>>, args: &[&str]) -> Result<String, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paddock"));
    command.arg("keys").args(args);
    match database.into() {
        Database::DataDir(dir) => command.arg("--data-dir").arg(dir),
        Database::Url(url) => command.arg("--database-url").arg(url),
    };
    let output = command.output().expect("run paddock keys");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

pub fn make_key<'a>(database: impl Into<Database<'a>>, tenant: &str) -> String {
    let key = keys(
        database,
        &["create", "--tenant", tenant, "--description", "test"],
    )
    .expect("keys create")
    .trim()
    .to_owned();
    assert!(key.starts_with("pdk_") && key.len() == 68, "{key}");
    key
}

/// Adds `authorization` (when there is one) to every call, as sent.
#[derive(Clone)]
pub struct Authorization(pub Option<String>);

impl tonic::service::Interceptor for Authorization {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", header.parse().unwrap());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Authorization>;

pub fn with_header(channel: Channel, header: Option<String>) -> Authed {
    InterceptedService::new(channel, Authorization(header))
}
