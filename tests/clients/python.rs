//! The Python client: its two examples, and a stock grpcio channel on a
//! Unix socket.

use tokio::process::Command;

use crate::common::{self, Provider, TestServer};
use crate::{clients_dir, python, run_ok};

crate::on_every_provider!(the_python_examples_run_green);

async fn the_python_examples_run_green(provider: Provider) {
    let Some(python) = python() else { return };
    let server = TestServer::for_provider(provider).await;
    let package = clients_dir().join("python");
    for (example, last_line) in [
        ("quickstart.py", "quickstart: every step passed"),
        ("quickstart_async.py", "quickstart_async: every step passed"),
    ] {
        let said = run_ok(
            example,
            Command::new(&python)
                .arg(package.join("examples").join(example))
                .env("PYTHONPATH", &package)
                .env("PADDOCK_ADDR", server.addr.to_string())
                .env_remove("PADDOCK_API_KEY")
                .env_remove("PADDOCK_IMAGE"),
        )
        .await;
        assert_eq!(said.lines().last(), Some(last_line), "{example}:\n{said}");
    }
}

/// grpc-core names a Unix-socket connection by its path, which is no HTTP/2
/// authority: the server must take it as it comes.
#[tokio::test]
async fn stock_grpcio_works_over_a_unix_socket_with_no_option() {
    let Some(python) = python() else { return };
    let socket = tempfile::tempdir().unwrap();
    let path = socket.path().join("paddock.sock");
    let server = TestServer::start_with(|args| {
        args.listen = Some(format!("unix:{}", path.display()));
    })
    .await;
    let script = r#"
import sys, grpc
from paddock.v1 import sandbox_pb2, sandbox_pb2_grpc, exec_pb2, exec_pb2_grpc
for target in sys.argv[1:]:
    with grpc.insecure_channel(target) as channel:
        sandboxes = sandbox_pb2_grpc.SandboxServiceStub(channel)
        made = sandboxes.CreateSandbox(sandbox_pb2.CreateSandboxRequest()).sandbox
        spec = exec_pb2.CommandSpec(shell="echo over the socket")
        ran = exec_pb2_grpc.ExecServiceStub(channel).RunCommand(
            exec_pb2.RunCommandRequest(sandbox_id=made.id, spec=spec))
        listed = sandboxes.ListSandboxes(sandbox_pb2.ListSandboxesRequest())
        sandboxes.DeleteSandbox(sandbox_pb2.DeleteSandboxRequest(sandbox_id=made.id))
        print(target, ran.stdout.decode().strip(), len(listed.sandboxes))
"#;
    // Both spellings grpc-core takes; each sends a different :authority.
    let relative = path.strip_prefix("/").unwrap().display().to_string();
    let said = run_ok(
        "a stock grpcio client",
        Command::new(&python)
            .args(["-c", script])
            .arg(format!("unix:{}", path.display()))
            .arg(format!("unix:///{relative}"))
            .env("PYTHONPATH", clients_dir().join("python")),
    )
    .await;
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "{said}");
    for line in lines {
        assert!(line.ends_with(" over the socket 1"), "{said}");
    }
    drop(server);
}
