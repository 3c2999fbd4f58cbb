//! What the gRPC health service answers: SERVING while the server takes
//! calls and its database answers; NOT_SERVING while the database does not
//! (checked every second) and from the moment shutdown begins.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::api::{ExecApi, FileApi, PortApi, SandboxApi, TemplateApi, VolumeApi};
use crate::pb::exec_service_server::ExecServiceServer;
use crate::pb::file_service_server::FileServiceServer;
use crate::pb::port_service_server::PortServiceServer;
use crate::pb::sandbox_service_server::SandboxServiceServer;
use crate::pb::template_service_server::TemplateServiceServer;
use crate::pb::volume_service_server::VolumeServiceServer;
use crate::store::{DatabaseHealth, Store};

/// How often the database is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a check may take before the database counts as down.
const CHECK_DEADLINE: Duration = Duration::from_secs(2);

/// Sets every service's status, and the server's (the empty name).
pub(super) async fn set_serving(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    let services = [
        <SandboxServiceServer<SandboxApi> as tonic::server::NamedService>::NAME,
        <ExecServiceServer<ExecApi> as tonic::server::NamedService>::NAME,
        <FileServiceServer<FileApi> as tonic::server::NamedService>::NAME,
        <PortServiceServer<PortApi> as tonic::server::NamedService>::NAME,
        <VolumeServiceServer<VolumeApi> as tonic::server::NamedService>::NAME,
        <TemplateServiceServer<TemplateApi> as tonic::server::NamedService>::NAME,
    ];
    for service in services {
        reporter.set_service_status(service, status).await;
    }
    reporter.set_service_status("", status).await;
}

/// Checks `database` every second and records what it finds in `health`
/// (so that calls fail at once while it is down) and in the health service,
/// until the task is aborted (as shutdown begins).
pub(super) fn watch_database(
    database: Arc<dyn Store>,
    health: Arc<DatabaseHealth>,
    reporter: HealthReporter,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(CHECK_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let outcome =
                match tokio::time::timeout(CHECK_DEADLINE, database.latest_revision()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(error.message().to_owned()),
                    Err(_) => Err(format!(
                        "it did not answer within {}s",
                        CHECK_DEADLINE.as_secs()
                    )),
                };
            let up = outcome.is_ok();
            let reason = outcome.as_ref().err().cloned().unwrap_or_default();
            if health.record(outcome) {
                if up {
                    info!("the database answers again: serving");
                } else {
                    warn!(%reason, "the database is not available: calls fail at once with UNAVAILABLE until it answers");
                }
                set_serving(&reporter, up).await;
            }
        }
    })
}
