//! The server's TLS, end to end with real clients: tonic's rustls client and
//! the `paddock` CLI. Handshakes with and without client certificates, a
//! plaintext client on the TLS port, a certificate replaced while serving,
//! and files that make no configuration.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestServer, eventually};
use paddock::config::{ServeArgs, ServerConfig};
use paddock::pb;
use paddock::server::{BoundAddr, Server};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use tempfile::TempDir;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A certificate authority and what it signed, written as PEM files.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert: Certificate,
}

impl Authority {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            cert,
        }
    }

    /// Writes `NAME.pem` and `NAME.key` for a leaf valid for `names` (and
    /// 127.0.0.1), and returns their paths.
    fn leaf(&self, dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// Writes the CA's certificate as `NAME.pem`.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }
}

/// A server's TLS material: its CA, its certificate, and a client CA with
/// one client certificate.
struct Pki {
    dir: TempDir,
    server_ca_pem: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_ca_pem: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = Authority::new("paddock test server CA");
        let server_ca_pem = server_ca.write(dir.path(), "server-ca");
        let (server_cert, server_key) = server_ca.leaf(dir.path(), "server", &["localhost"]);
        let client_ca = Authority::new("paddock test client CA");
        let client_ca_pem = client_ca.write(dir.path(), "client-ca");
        let (client_cert, client_key) = client_ca.leaf(dir.path(), "client", &["alice"]);
        Self {
            dir,
            server_ca_pem,
            server_cert,
            server_key,
            client_ca_pem,
            client_cert,
            client_key,
        }
    }

    fn serve_tls(&self, args: &mut ServeArgs) {
        args.tls_cert = Some(self.server_cert.clone());
        args.tls_key = Some(self.server_key.clone());
    }

    fn serve_mutual_tls(&self, args: &mut ServeArgs) {
        self.serve_tls(args);
        args.tls_client_ca = Some(self.client_ca_pem.clone());
    }
}

fn port(server: &TestServer) -> u16 {
    match &server.addr {
        BoundAddr::Tcp(addr) => addr.port(),
        BoundAddr::Unix(_) => unreachable!("TLS servers listen on TCP"),
    }
}

/// A TLS channel to `server` trusting `ca`, presenting `identity` if any.
async fn tls_channel(
    server: &TestServer,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(ca).unwrap(),
        ))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{}", port(server)))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
}

/// Whether a health check over `channel` succeeds (with mutual TLS a
/// refused client may only learn it on its first call).
async fn health_ok(channel: Result<Channel, tonic::transport::Error>) -> Result<(), String> {
    let channel = channel.map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
        .map_err(|status| format!("call: {status:?}"))
}

/// Runs the `paddock` CLI; returns (success, stdout, stderr). Async: the
/// server answering it runs on the test's thread.
async fn cli(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(args)
        .env_remove("PADDOCK_API_KEY")
        .env_remove("PADDOCK_ADDR")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .await
        .expect("run paddock");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn tls_serves_real_clients_and_refuses_plaintext() {
    let pki = Pki::new();
    let server = TestServer::start_with(|args| pki.serve_tls(args)).await;

    health_ok(tls_channel(&server, &pki.server_ca_pem, None).await)
        .await
        .expect("a client trusting the server's CA is served");
    let mut sandboxes = pb::sandbox_service_client::SandboxServiceClient::new(
        tls_channel(&server, &pki.server_ca_pem, None)
            .await
            .unwrap(),
    );
    sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("ListSandboxes over TLS");

    // A plaintext HTTP/2 client on the TLS port gets no answer.
    let plaintext = Endpoint::from_shared(format!("http://127.0.0.1:{}", port(&server)))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let refused = HealthClient::new(plaintext)
        .check(HealthCheckRequest::default())
        .await
        .expect_err("a plaintext client on the TLS port must not be served");
    assert_ne!(refused.code(), tonic::Code::Ok);

    // Raw bytes of the HTTP/2 preface: the server answers with a TLS alert
    // or closes, never with an HTTP/2 frame.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port(&server)))
            .await
            .unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        assert!(
            answer.first() != Some(&0) && !answer.starts_with(b"HTTP"),
            "plaintext got an HTTP answer: {answer:?}"
        );
        // A TLS record (alert: content type 21) or nothing at all.
        assert!(
            answer.is_empty() || answer[0] == 21,
            "expected a TLS alert or a closed connection, got {answer:?}"
        );
    }

    // A client that trusts another CA refuses the server.
    let stranger = Authority::new("someone else");
    let stranger_pem = stranger.write(pki.dir.path(), "stranger-ca");
    health_ok(tls_channel(&server, &stranger_pem, None).await)
        .await
        .expect_err("a client must not trust a certificate its CA did not sign");

    // The CLI speaks TLS: https:// with --tls-ca.
    let url = format!("https://localhost:{}", port(&server));
    let (ok, stdout, stderr) = cli(&[
        "sandbox",
        "list",
        "--server",
        &url,
        "--tls-ca",
        pki.server_ca_pem.to_str().unwrap(),
    ])
    .await;
    assert!(ok, "paddock sandbox list over TLS: {stderr}");
    assert!(stdout.starts_with("ID "), "{stdout}");
    // Without the CA the system's roots do not know the test CA.
    let (ok, _, stderr) = cli(&["sandbox", "list", "--server", &url]).await;
    assert!(!ok, "the CLI must refuse an unknown CA");
    assert!(stderr.contains("cannot reach the server"), "{stderr}");
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_its_ca() {
    let pki = Pki::new();
    let server = TestServer::start_with(|args| pki.serve_mutual_tls(args)).await;

    health_ok(tls_channel(&server, &pki.server_ca_pem, None).await)
        .await
        .expect_err("a client without a certificate must be refused");
    let other_ca = Authority::new("not the client CA");
    let (other_cert, other_key) = other_ca.leaf(pki.dir.path(), "intruder", &["mallory"]);
    health_ok(tls_channel(&server, &pki.server_ca_pem, Some((&other_cert, &other_key))).await)
        .await
        .expect_err("a client certificate from another CA must be refused");
    health_ok(
        tls_channel(
            &server,
            &pki.server_ca_pem,
            Some((&pki.client_cert, &pki.client_key)),
        )
        .await,
    )
    .await
    .expect("a client certificate from the client CA is admitted");

    // The CLI, with and without its certificate, making and using a sandbox.
    let url = format!("https://127.0.0.1:{}", port(&server));
    let ca = pki.server_ca_pem.to_str().unwrap();
    let mtls = [
        "--server",
        url.as_str(),
        "--tls-ca",
        ca,
        "--tls-server-name",
        "localhost",
        "--tls-client-cert",
        pki.client_cert.to_str().unwrap(),
        "--tls-client-key",
        pki.client_key.to_str().unwrap(),
    ];
    let (ok, _, stderr) = cli(&[
        "sandbox",
        "list",
        "--server",
        &url,
        "--tls-ca",
        ca,
        "--tls-server-name",
        "localhost",
    ])
    .await;
    assert!(!ok, "the CLI without a client certificate must be refused");
    assert!(
        stderr.contains("paddock sandbox:"),
        "the refusal is reported: {stderr}"
    );
    let (ok, stdout, stderr) = cli(&[&["sandbox", "create"], &mtls[..]].concat()).await;
    assert!(ok, "create over mutual TLS: {stderr}");
    let id = stdout.trim().to_owned();
    let (ok, stdout, stderr) = cli(&[
        &["exec"],
        &mtls[..],
        &[&id, "--", "sh", "-c", "echo over mtls; exit 3"],
    ]
    .concat())
    .await;
    assert!(!ok, "exit 3 is a failure");
    assert_eq!(stdout, "over mtls\n", "{stderr}");
    let (ok, stdout, stderr) = cli(&[&["sandbox", "delete"], &mtls[..], &[&id]].concat()).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("DELETED"), "{stdout}");
}

#[tokio::test]
async fn a_replaced_certificate_is_served_without_a_restart() {
    let pki = Pki::new();
    let server = TestServer::start_with(|args| {
        pki.serve_tls(args);
        args.tls_reload_interval = Some("100ms".into());
    })
    .await;
    health_ok(tls_channel(&server, &pki.server_ca_pem, None).await)
        .await
        .expect("the first certificate is served");

    // Half-written files (garbage) keep the certificate in use.
    std::fs::write(&pki.server_cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    health_ok(tls_channel(&server, &pki.server_ca_pem, None).await)
        .await
        .expect("an invalid new certificate leaves the old one in use");

    // A certificate from a new CA, written in place, takes over.
    let renewed_ca = Authority::new("renewed server CA");
    let renewed_ca_pem = renewed_ca.write(pki.dir.path(), "renewed-ca");
    let (cert, key) = renewed_ca.leaf(pki.dir.path(), "renewed", &["localhost"]);
    std::fs::rename(&key, &pki.server_key).unwrap();
    std::fs::rename(&cert, &pki.server_cert).unwrap();
    eventually(
        Duration::from_secs(10),
        "the renewed certificate",
        || async {
            health_ok(tls_channel(&server, &renewed_ca_pem, None).await)
                .await
                .ok()
        },
    )
    .await;
    health_ok(tls_channel(&server, &pki.server_ca_pem, None).await)
        .await
        .expect_err("new connections no longer get the old certificate");
}

#[tokio::test]
async fn tls_files_that_make_no_configuration_stop_the_start_and_are_named() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let start = |configure: &dyn Fn(&mut ServeArgs)| {
        let mut args = ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data.path().to_path_buf()),
            provider: Some("process".into()),
            agent_binary: Some(env!("CARGO_BIN_EXE_paddock").into()),
            ..ServeArgs::default()
        };
        configure(&mut args);
        async move {
            let config = ServerConfig::resolve(args).map_err(|e| format!("{e:#}"))?;
            Server::start(config)
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:#}"))
        }
    };

    let garbage = pki.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    type Configure<'a> = Box<dyn Fn(&mut ServeArgs) + 'a>;
    let cases: Vec<(&str, Configure, String)> = vec![
        (
            "a certificate without its key",
            Box::new(|args| args.tls_cert = Some(pki.server_cert.clone())),
            "--tls-key".into(),
        ),
        (
            "a key without a certificate",
            Box::new(|args| args.tls_key = Some(pki.server_key.clone())),
            "--tls-cert".into(),
        ),
        (
            "a missing certificate file",
            Box::new(|args| {
                args.tls_cert = Some("/nonexistent/cert.pem".into());
                args.tls_key = Some(pki.server_key.clone());
            }),
            "/nonexistent/cert.pem".into(),
        ),
        (
            "a certificate file that is not PEM",
            Box::new(|args| {
                args.tls_cert = Some(garbage.clone());
                args.tls_key = Some(pki.server_key.clone());
            }),
            garbage.display().to_string(),
        ),
        (
            "a key of another certificate",
            Box::new(|args| {
                args.tls_cert = Some(pki.server_cert.clone());
                args.tls_key = Some(pki.client_key.clone());
            }),
            "does not fit".into(),
        ),
        (
            "a client CA that is not PEM",
            Box::new(|args| {
                pki.serve_tls(args);
                args.tls_client_ca = Some(garbage.clone());
            }),
            garbage.display().to_string(),
        ),
        (
            "TLS on a Unix socket",
            Box::new(|args| {
                pki.serve_tls(args);
                args.listen = Some(format!("unix:{}", data.path().join("s.sock").display()));
            }),
            "TLS is for TCP listeners".into(),
        ),
    ];
    for (what, configure, named) in cases {
        let error = start(&*configure)
            .await
            .expect_err(&format!("{what} must stop the start"));
        assert!(
            error.contains(&named),
            "{what}: {error:?} should name {named:?}"
        );
    }
}
