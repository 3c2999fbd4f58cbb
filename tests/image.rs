//! The image the Dockerfile makes (scripts/build-image, which scripts/test
//! runs and names in `PADDOCK_TEST_IMAGE`): small, non-root, and a server
//! that answers health checks from outside its container.

mod common;

use std::process::Command;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

/// The largest the image may be.
const MAX_BYTES: u64 = 40 * 1000 * 1000;

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Removes the container when the test ends, however it ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[tokio::test]
async fn the_image_is_small_runs_as_non_root_and_answers_health_checks() {
    let Some(image) = common::program_from("PADDOCK_TEST_IMAGE") else {
        return;
    };
    let image = image.display().to_string();
    let size: u64 = docker(&["image", "inspect", "--format", "{{.Size}}", &image])
        .parse()
        .unwrap();
    assert!(size < MAX_BYTES, "the image is {size} bytes");
    let user = docker(&["image", "inspect", "--format", "{{.Config.User}}", &image]);
    assert_eq!(user, "10001:10001", "the image runs as a non-root user");

    let container = Container(docker(&["run", "-d", "-p", "127.0.0.1::50051", &image]));
    let published = docker(&["port", &container.0, "50051/tcp"]);
    let addr = published.lines().next().unwrap().to_owned();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let serving = common::eventually(Duration::from_secs(20), "the server to serve", || {
        let mut health = health.clone();
        async move {
            let answer = health
                .check(HealthCheckRequest {
                    service: "paddock.v1.SandboxService".into(),
                })
                .await
                .ok()?;
            Some(answer.into_inner().status)
        }
    })
    .await;
    assert_eq!(serving, ServingStatus::Serving as i32);
    // The whole server too, as a stock probe asks.
    let whole = health
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(whole.status, ServingStatus::Serving as i32);
    let processes = docker(&["top", &container.0, "-o", "pid,uid,args"]);
    let users: Vec<&str> = processes
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    assert!(
        !users.is_empty() && users.iter().all(|uid| *uid == "10001"),
        "something in the container runs as another user:\n{processes}"
    );
}
