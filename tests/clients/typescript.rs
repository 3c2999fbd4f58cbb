//! The TypeScript client's example, over gRPC on every provider and over
//! gRPC-Web (as a browser speaks it, through `fetch`) to a server started
//! with `--grpc-web`, whose CORS answers only the origins it was given.

use tokio::process::Command;

use crate::common::{self, Provider, TestServer};
use crate::run_ok;

crate::on_every_provider!(the_typescript_example_runs_over_grpc_and_grpc_web);

async fn the_typescript_example_runs_over_grpc_and_grpc_web(provider: Provider) {
    // The client as tsc compiled it (scripts/test builds it).
    let Some(dist) = common::program_from("PADDOCK_TEST_TYPESCRIPT") else {
        return;
    };
    let origin = "https://ide.example.com";
    let server = TestServer::for_provider_with(provider, |args| {
        args.grpc_web = Some(true);
        args.grpc_web_origins = Some(vec![origin.into()]);
    })
    .await;
    let example = dist.join("examples/quickstart.js");
    for transport in ["grpc", "grpc-web"] {
        let said = run_ok(
            &format!("the TypeScript example over {transport}"),
            Command::new("node")
                .arg(&example)
                .env("PADDOCK_ADDR", format!("http://{}", server.addr))
                .env("PADDOCK_TRANSPORT", transport)
                .env_remove("PADDOCK_API_KEY")
                .env_remove("PADDOCK_IMAGE"),
        )
        .await;
        let last = format!("quickstart ({transport}): every step passed");
        assert_eq!(said.lines().last(), Some(last.as_str()), "{said}");
    }

    // A browser's preflight: the allowed origin is answered, another is not.
    let preflight = r#"
const [url, ...origins] = process.argv.slice(1);
for (const origin of origins) {
  const answer = await fetch(url, { method: "OPTIONS", headers: {
    origin, "access-control-request-method": "POST",
    "access-control-request-headers": "authorization,content-type,x-grpc-web" } });
  console.log(origin, answer.status, answer.headers.get("access-control-allow-origin"),
    answer.headers.get("access-control-allow-headers"));
}
"#;
    let said = run_ok(
        "a CORS preflight",
        Command::new("node")
            .args(["--input-type=module", "-e", preflight])
            .arg(format!(
                "http://{}/paddock.v1.SandboxService/ListSandboxes",
                server.addr
            ))
            .args([origin, "https://elsewhere.example"]),
    )
    .await;
    let lines: Vec<&str> = said.lines().collect();
    assert!(
        lines[0].starts_with(&format!("{origin} 200 {origin} "))
            && lines[0].contains("authorization"),
        "{said}"
    );
    assert!(
        lines[1].starts_with("https://elsewhere.example 200 null "),
        "no Access-Control-Allow-Origin for another origin: {said}"
    );
}
