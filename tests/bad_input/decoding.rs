//! Messages that do not decode are INVALID_ARGUMENT on every service.

use super::*;

/// Stands in for any request whose first two fields are strings (or
/// messages), with bytes that are not what those fields must hold.
#[derive(Clone, PartialEq, prost::Message)]
struct Undecodable {
    #[prost(bytes = "vec", tag = "1")]
    first: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    second: Vec<u8>,
}

#[tokio::test]
async fn messages_that_do_not_decode_are_invalid_argument_on_every_service() {
    use tonic::codegen::http::uri::PathAndQuery;
    let server = TestServer::start().await;
    // Not UTF-8 in a string field; not a message in a message field.
    let not_utf8 = Undecodable {
        first: vec![0xff, 0xfe, b'x'],
        second: vec![0xc3, 0x28],
    };
    let not_a_message = Undecodable {
        first: vec![0xff, 0xff, 0xff],
        second: Vec::new(),
    };
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    let unary = [
        "/paddock.v1.SandboxService/GetSandbox",
        "/paddock.v1.SandboxService/CreateSandbox",
        "/paddock.v1.SandboxService/DeleteSandbox",
        "/paddock.v1.ExecService/RunCommand",
        "/paddock.v1.ExecService/GetCommand",
        "/paddock.v1.FileService/Stat",
        "/paddock.v1.FileService/ReadFile",
        "/paddock.v1.FileService/Grep",
    ];
    for path in unary {
        grpc.ready().await.unwrap();
        let answer = grpc
            .unary(
                tonic::Request::new(not_utf8.clone()),
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<Undecodable, Undecodable>::default(),
            )
            .await;
        let status = answer.expect_err(path);
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{path}: {}",
            status.message()
        );
        assert!(
            status.message().contains("not valid protobuf"),
            "{path}: {}",
            status.message()
        );
    }
    let streams = [
        "/paddock.v1.ExecService/Exec",
        "/paddock.v1.FileService/Upload",
        "/paddock.v1.FileService/UploadArchive",
    ];
    for path in streams {
        grpc.ready().await.unwrap();
        let answer = grpc
            .streaming(
                tonic::Request::new(futures::stream::iter([not_a_message.clone()])),
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<Undecodable, Undecodable>::default(),
            )
            .await;
        let status = match answer {
            Ok(mut responses) => responses.get_mut().message().await.expect_err(path),
            Err(status) => status,
        };
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{path}: {}",
            status.message()
        );
    }
    // The server is still well and answers proper requests.
    let listed = server
        .sandboxes()
        .await
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sandboxes.is_empty());
}
