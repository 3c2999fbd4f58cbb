//! Volumes tried as an attacker would: another tenant's volume of the same
//! name is another volume; its id, its engine object's name, the agent's
//! own volume and host paths mount nothing; a symlink planted in a volume
//! leads a reader of the file service nowhere outside its sandbox; and a
//! tenant cannot delete or see another's volume.

use super::*;
use paddock::pb::volume_service_client::VolumeServiceClient;

async fn volumes_belong_to_their_tenant(provider: Provider) {
    let server = exposed_server(provider, |_| {}).await;
    let channel = server.channel().await;
    let key = |tenant: &str| Some(format!("Bearer {}", make_key(&server, tenant)));
    let mut alice_volumes = VolumeServiceClient::new(with_header(channel.clone(), key("alice")));
    let mut bob_volumes = VolumeServiceClient::new(with_header(channel.clone(), key("bob")));
    let mut alice = Tenant::of(&server, "alice").await;
    let mut bob = Tenant::of(&server, "bob").await;
    let make = |name: &str| pb::CreateVolumeRequest {
        name: name.into(),
        provider: String::new(),
    };
    let alices = alice_volumes
        .create_volume(make("data"))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let bobs = bob_volumes
        .create_volume(make("data"))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_ne!(alices.id, bobs.id);
    let mounting = |name: &str| pb::CreateSandboxRequest {
        network: pb::NetworkMode::None as i32,
        volumes: vec![pb::Volume {
            name: name.into(),
            mount_path: "/shared".into(),
            read_only: false,
        }],
        ..Default::default()
    };
    let keeper = alice.sandbox(mounting("data")).await;
    let wrote = alice
        .run(&keeper, "echo alice-secret > /shared/secret && echo ok")
        .await;
    assert_eq!(wrote.stdout, "ok\n", "{wrote:?}");

    // Control: bob mounts his own volume called "data", which is empty.
    let attacker = bob.sandbox(mounting("data")).await;
    let looked = bob
        .run(&attacker, "ls -A /shared; cat /shared/secret 2>&1")
        .await;
    assert!(!looked.stdout.contains("alice-secret"), "{looked:?}");
    // A symlink in his volume pointing at a host file, or at alice's, read
    // through the file service.
    let host_file = format!("/var/tmp/paddock-escape-{}", uuid::Uuid::now_v7().simple());
    std::fs::write(&host_file, "host-secret").unwrap();
    for (link, target) in [
        ("to-host", host_file.as_str()),
        ("to-volume", "/proc/1/root/shared/secret"),
    ] {
        bob.run(&attacker, &format!("ln -s {target} /shared/{link}"))
            .await;
        let read = bob
            .files
            .read_file(pb::ReadFileRequest {
                sandbox_id: attacker.clone(),
                path: format!("/shared/{link}"),
                ..Default::default()
            })
            .await;
        if let Ok(read) = read {
            let text = String::from_utf8_lossy(&read.into_inner().content).into_owned();
            assert!(
                !text.contains("alice-secret") && !text.contains("host-secret"),
                "{link}: {text}"
            );
        }
    }
    std::fs::remove_file(&host_file).unwrap();

    // Alice's volume by its id, by its engine object's name, the agent's
    // volume, host paths: none is one of bob's volumes.
    let mut names = vec![alices.id.clone(), format!("paddock-{}", alices.id)];
    if provider == Provider::Docker {
        let agent = common::docker::docker_output(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            "label=io.paddock.agent-sha256",
        ]);
        names.extend(agent.lines().map(str::to_owned));
    }
    for name in &names {
        let refused = bob
            .sandboxes
            .create_sandbox(mounting(name))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::NotFound, "{name}: {refused:?}");
    }
    for name in ["/etc", "../data", "."] {
        let refused = bob
            .sandboxes
            .create_sandbox(mounting(name))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "{name}: {refused:?}"
        );
    }

    // Bob's calls reach only his own volume.
    bob_volumes
        .delete_volume(pb::DeleteVolumeRequest {
            name: "data".into(),
        })
        .await
        .expect_err("his volume is in use by his sandbox");
    let listed = bob_volumes
        .list_volumes(pb::ListVolumesRequest {})
        .await
        .unwrap()
        .into_inner()
        .volumes;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, bobs.id);
    let seen = bob_volumes
        .get_volume(pb::GetVolumeRequest {
            name: "data".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(seen.mounted_by, vec![attacker.clone()]);
    let after = alice.run(&keeper, "cat /shared/secret").await;
    assert_eq!(after.stdout, "alice-secret\n", "{after:?}");
    alice.still_healthy(&keeper).await;
}

#[tokio::test]
async fn process_volumes_belong_to_their_tenant() {
    if !privileged() {
        return;
    }
    volumes_belong_to_their_tenant(Provider::Process).await;
}

#[tokio::test]
async fn docker_volumes_belong_to_their_tenant() {
    if !common::docker::available() || !privileged() {
        return;
    }
    volumes_belong_to_their_tenant(Provider::Docker).await;
}
