//! Template builds run a Dockerfile's steps, which are untrusted code, on
//! the engine: tried as an attacker would, a RUN step reaches neither the
//! host's services (through the build network's gateway or the default
//! bridge's) nor the metadata address, while the same probe from a plain
//! container on the default bridge does reach the host (the control).

use super::network::gateway_of;
use super::*;
use paddock::pb::build_template_request::Request as Up;
use paddock::pb::build_template_response::Response as Down;
use paddock::pb::template_service_client::TemplateServiceClient;

const HOST_SECRET: &str = "host-service-secret";

#[tokio::test]
async fn build_steps_reach_no_host_service() {
    if !common::docker::available() || !privileged() {
        return;
    }
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = std::io::Write::write_all(&mut stream, format!("{HOST_SECRET}\n").as_bytes());
        }
    });
    let server = exposed_server(Provider::Docker, |_| {}).await;
    let bridge = gateway_of("bridge");
    // The control: a container of the default bridge reaches the host.
    let control = common::docker::docker_output(&[
        "run",
        "--rm",
        common::docker::BUSYBOX,
        "nc",
        "-w",
        "3",
        &bridge,
        &port.to_string(),
    ]);
    assert!(
        control.contains(HOST_SECRET),
        "the probe works: {control:?}"
    );

    let targets = [
        bridge,
        gateway_of("paddock-egress"),
        "169.254.169.254".to_owned(),
    ];
    let probes: String = targets
        .iter()
        .map(|target| {
            format!(
                "RUN (nc -w 3 {target} {port} </dev/null || true) | sed 's/^/from {target}: /'\n"
            )
        })
        .collect();
    let dockerfile = format!("FROM {}\n{probes}", common::docker::BUSYBOX);
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    archive
        .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .unwrap();
    let key = make_key(&server, "mallory");
    let requests = [
        pb::BuildTemplateRequest {
            request: Some(Up::Header(pb::BuildTemplateHeader {
                name: "probe".into(),
                ..Default::default()
            })),
        },
        pb::BuildTemplateRequest {
            request: Some(Up::Context(archive.into_inner().unwrap().into())),
        },
    ];
    let mut answers = TemplateServiceClient::new(with_header(
        server.channel().await,
        Some(format!("Bearer {key}")),
    ))
    .build_template(futures::stream::iter(requests))
    .await
    .unwrap()
    .into_inner();
    let mut log = Vec::new();
    let mut built = false;
    while let Some(answer) = answers.message().await.expect("the build succeeds") {
        match answer.response {
            Some(Down::Log(line)) => log.push(line),
            Some(Down::Template(_)) => built = true,
            None => {}
        }
    }
    assert!(built, "{log:?}");
    assert_eq!(
        log.iter()
            .filter(|line| line.starts_with("Step ") && line.contains(": RUN (nc"))
            .count(),
        3,
        "every probe ran: {log:?}"
    );
    assert!(
        !log.iter().any(|line| line.contains(HOST_SECRET)),
        "a build step reached the host: {log:?}"
    );
}
