//! The Go client's example (generated code built with Debian's Go and
//! grpc-go) on every provider.

use tokio::process::Command;

use crate::common::{self, Provider, TestServer};
use crate::run_ok;

crate::on_every_provider!(the_go_example_runs_green);

async fn the_go_example_runs_green(provider: Provider) {
    let Some(example) = common::program_from("PADDOCK_TEST_GO_EXAMPLE") else {
        return;
    };
    let server = TestServer::for_provider(provider).await;
    let said = run_ok(
        "the Go example",
        Command::new(example)
            .env("PADDOCK_ADDR", server.addr.to_string())
            .env_remove("PADDOCK_API_KEY")
            .env_remove("PADDOCK_IMAGE"),
    )
    .await;
    assert_eq!(
        said.lines().last(),
        Some("quickstart (go): every step passed"),
        "{said}"
    );
}
