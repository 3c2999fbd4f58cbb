//! A remote engine over mutual TLS, its agents reached through the bridge.

use super::*;

/// A stand-in for a remote engine that demands mutual TLS: a TLS listener on
/// loopback that accepts only clients with a certificate from its own CA and
/// forwards each connection to the local engine's socket.
struct TlsEngineProxy {
    address: std::net::SocketAddr,
    /// ca.pem, cert.pem and key.pem for a client.
    client_files: tempfile::TempDir,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsEngineProxy {
    async fn start() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
        };
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        use std::sync::Arc;

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let mut server_params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        server_params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client_cert = CertificateParams::new(vec!["paddock-test-client".to_owned()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .unwrap();

        let client_files = tempfile::tempdir().unwrap();
        std::fs::write(client_files.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(client_files.path().join("cert.pem"), client_cert.pem()).unwrap();
        std::fs::write(
            client_files.path().join("key.pem"),
            client_key.serialize_pem(),
        )
        .unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepting = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut engine).await;
                });
            }
        });
        Self {
            address,
            client_files,
            accepting,
        }
    }
}

impl Drop for TlsEngineProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

#[tokio::test]
async fn a_remote_engine_over_mutual_tls_serves_sandboxes_through_the_bridge() {
    if !docker::available() {
        return;
    }
    let proxy = TlsEngineProxy::start().await;
    let host = format!("tcp://{}", proxy.address);
    let server = TestServer::start_with(|args| {
        args.provider = Some("docker".into());
        args.docker_host = Some(host.clone());
        args.docker_tls_dir = Some(proxy.client_files.path().to_path_buf());
    })
    .await;
    let mut sandboxes = server.sandboxes().await;
    let docker_info = server.provider("docker").await;
    assert!(docker_info.available, "{}", docker_info.detail);
    assert!(docker_info.detail.contains(&host), "{}", docker_info.detail);
    let sandbox = server
        .running_sandbox(pb::CreateSandboxRequest::default())
        .await;
    let mut exec = ExecServiceClient::new(server.channel().await);
    let out = run(&mut exec, &sandbox.id, &["echo", "over tls"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over tls\n");
    sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();
    assert!(containers_of(&sandbox.id).is_empty());

    // Without the client certificate the engine is unreachable, and the
    // provider says so instead of failing the server.
    let plain = TestServer::start_with(|args| {
        args.provider = Some("docker".into());
        args.docker_host = Some(host.clone());
    })
    .await;
    let docker_info = plain.provider("docker").await;
    assert!(!docker_info.available);
    assert!(
        docker_info.detail.contains("does not answer"),
        "{}",
        docker_info.detail
    );
    let refused = plain
        .sandboxes()
        .await
        .create_sandbox(pb::CreateSandboxRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{}", refused.message());
}
