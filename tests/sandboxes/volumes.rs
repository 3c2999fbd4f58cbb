//! VolumeService and the volumes sandboxes mount, on every provider that
//! holds volumes: data outlives its sandboxes, one volume serves several
//! sandboxes at once, read-only mounts refuse writes, a volume in use cannot
//! be deleted, and a deleted volume's storage is gone.

use super::*;
use common::Provider;
use paddock::pb::volume_service_client::VolumeServiceClient;
use tonic::transport::Channel;

/// Where the tests mount their volume: a top-level directory the host
/// lacks, so that the process provider can mount it there too.
const MOUNT: &str = "/shared";

async fn volumes(server: &TestServer) -> VolumeServiceClient<Channel> {
    VolumeServiceClient::new(server.channel().await)
}

fn mounting(volume: &str, read_only: bool) -> pb::CreateSandboxRequest {
    pb::CreateSandboxRequest {
        volumes: vec![pb::Volume {
            name: volume.into(),
            mount_path: MOUNT.into(),
            read_only,
        }],
        ..Default::default()
    }
}

async fn delete(server: &TestServer, sandbox_id: &str) {
    server
        .sandboxes()
        .await
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox_id.into(),
        })
        .await
        .expect("delete succeeds");
}

/// Whether the provider's storage of volume `id` exists.
fn storage_exists(server: &TestServer, provider: Provider, id: &str) -> bool {
    let object = format!("paddock-{id}");
    match provider {
        Provider::Process => server
            .data_dir
            .join("sandboxes")
            .join(".volumes")
            .join(object)
            .exists(),
        Provider::Docker | Provider::DockerBridge => {
            common::docker::docker(&["volume", "inspect", &object])
        }
        Provider::Kubernetes => server.volume_claim_exists(&object),
    }
}

async fn volumes_outlive_their_sandboxes_and_are_shared(provider: Provider) {
    let server = TestServer::for_provider(provider).await;
    let mut service = volumes(&server).await;
    let made = service
        .create_volume(pb::CreateVolumeRequest {
            name: "data".into(),
            provider: String::new(),
        })
        .await
        .expect("CreateVolume succeeds")
        .into_inner()
        .volume
        .unwrap();
    assert!(made.id.starts_with("vol_"), "{made:?}");
    assert!(made.create_time.is_some() && made.mounted_by.is_empty());
    assert!(storage_exists(&server, provider, &made.id));
    let again = service
        .create_volume(pb::CreateVolumeRequest {
            name: "data".into(),
            provider: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");

    // Written by a command and through the file service, which must see the
    // volume where commands do.
    let writer = server.running_sandbox(mounting("data", false)).await;
    server
        .shell(&writer.id, &format!("echo persisted > {MOUNT}/note"))
        .await;
    server
        .write(
            &writer.id,
            &format!("{MOUNT}/written"),
            b"by the file service",
        )
        .await;
    assert_eq!(
        server
            .shell(&writer.id, &format!("cat {MOUNT}/written"))
            .await,
        "by the file service"
    );
    delete(&server, &writer.id).await;

    let reader = server.running_sandbox(mounting("data", true)).await;
    assert_eq!(
        server.shell(&reader.id, &format!("cat {MOUNT}/note")).await,
        "persisted\n"
    );
    let refused = server
        .run(&reader.id, &["touch", &format!("{MOUNT}/other")])
        .await;
    assert_ne!(refused.exit_code, Some(0), "{refused:?}");

    // A second sandbox mounts it read-write meanwhile: the reader sees what
    // it writes.
    let sharer = server.running_sandbox(mounting("data", false)).await;
    server
        .shell(&sharer.id, &format!("echo shared > {MOUNT}/live"))
        .await;
    assert_eq!(
        server.shell(&reader.id, &format!("cat {MOUNT}/live")).await,
        "shared\n"
    );

    let listed = service
        .get_volume(pb::GetVolumeRequest {
            name: "data".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let mut users = vec![reader.id.clone(), sharer.id.clone()];
    users.sort();
    assert_eq!(listed.mounted_by, users);

    let in_use = service
        .delete_volume(pb::DeleteVolumeRequest {
            name: "data".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(in_use.code(), Code::FailedPrecondition, "{in_use:?}");
    assert!(
        in_use.message().contains(&reader.id) && in_use.message().contains(&sharer.id),
        "{}",
        in_use.message()
    );
    assert!(storage_exists(&server, provider, &made.id));

    delete(&server, &reader.id).await;
    delete(&server, &sharer.id).await;
    service
        .delete_volume(pb::DeleteVolumeRequest {
            name: "data".into(),
        })
        .await
        .expect("a volume nothing mounts is deleted");
    assert!(!storage_exists(&server, provider, &made.id));
    let gone = service
        .get_volume(pb::GetVolumeRequest {
            name: "data".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    let unmountable = server
        .sandboxes()
        .await
        .create_sandbox(mounting("data", false))
        .await
        .unwrap_err();
    assert_eq!(unmountable.code(), Code::NotFound, "{unmountable:?}");
    assert!(
        unmountable.message().contains("CreateVolume"),
        "{}",
        unmountable.message()
    );
    assert!(
        service
            .list_volumes(pb::ListVolumesRequest {})
            .await
            .unwrap()
            .into_inner()
            .volumes
            .is_empty()
    );
}

on_every_provider!(volumes_outlive_their_sandboxes_and_are_shared);

#[tokio::test]
async fn volume_requests_that_cannot_be_met_are_refused_with_reasons() {
    let server = TestServer::start().await;
    let mut service = volumes(&server).await;
    for (request, code, says) in [
        (
            pb::CreateVolumeRequest {
                name: "-bad".into(),
                provider: String::new(),
            },
            Code::InvalidArgument,
            "name:",
        ),
        (
            pb::CreateVolumeRequest {
                name: "fine".into(),
                provider: "nowhere".into(),
            },
            Code::InvalidArgument,
            "unknown provider",
        ),
    ] {
        let refused = service.create_volume(request).await.unwrap_err();
        assert_eq!(refused.code(), code, "{refused:?}");
        assert!(refused.message().contains(says), "{}", refused.message());
    }
    let missing = service
        .delete_volume(pb::DeleteVolumeRequest {
            name: "never-made".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    for mount_path in ["/", "/.paddock/bin", "relative"] {
        let refused = server
            .sandboxes()
            .await
            .create_sandbox(pb::CreateSandboxRequest {
                volumes: vec![pb::Volume {
                    name: "fine".into(),
                    mount_path: mount_path.into(),
                    read_only: false,
                }],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains("volumes[0].mount_path"),
            "{}",
            refused.message()
        );
    }
}
