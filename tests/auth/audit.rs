//! The audit trail says who did what, and no log line holds a secret.

use super::*;

#[tokio::test]
async fn the_audit_trail_says_who_did_what_and_no_log_holds_a_secret() {
    let data = tempfile::tempdir().unwrap();
    let alice = make_key(data.path(), "alice");
    let mallory = make_key(data.path(), "mallory");
    let server = common::spawned::ServerProcess::spawn_with(
        data.path(),
        &[
            ("PADDOCK_AUTH", "keys"),
            // The audit trail is kept whatever the filter; `serving` tells the harness the port.
            ("PADDOCK_LOG", "warn,paddock::server=info"),
        ],
    );
    let channel = server.channel().await;
    let header = |key: &str| Some(format!("Bearer {key}"));
    let mut sandboxes = SandboxServiceClient::new(with_header(channel.clone(), header(&alice)));
    let mut exec = ExecServiceClient::new(with_header(channel.clone(), header(&alice)));
    let mut files = FileServiceClient::new(with_header(channel.clone(), header(&alice)));
    let mut intruder = SandboxServiceClient::new(with_header(channel, header(&mallory)));

    const SECRET: &str = "hunter2-secret-value";
    let sandbox = sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            env: [("DB_PASSWORD".to_owned(), SECRET.to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    assert!(
        !format!("{sandbox:?}").contains(SECRET),
        "a sandbox shows its env keys, never their values"
    );
    let ran = exec
        .run_command(pb::RunCommandRequest {
            sandbox_id: sandbox.id.clone(),
            spec: Some(pb::CommandSpec {
                shell: "test ${#DB_PASSWORD}${#API_TOKEN} = 2010".into(),
                env: [("API_TOKEN".to_owned(), "tok-987654".to_owned())].into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ran.exit_code, Some(0), "the command saw both values");
    let started = exec
        .start_command(pb::StartCommandRequest {
            sandbox_id: sandbox.id.clone(),
            spec: Some(pb::CommandSpec {
                command: vec!["true".into()],
                env: [("SERVICE_TOKEN".to_owned(), SECRET.to_owned())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .command
        .unwrap();
    let got = exec
        .get_command(pb::GetCommandRequest {
            sandbox_id: sandbox.id.clone(),
            command_id: started.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let listed = exec
        .list_commands(pb::ListCommandsRequest {
            sandbox_id: sandbox.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for answer in [
        format!("{started:?}"),
        format!("{got:?}"),
        format!("{listed:?}"),
    ] {
        assert!(answer.contains("SERVICE_TOKEN"), "the env keys are shown");
        assert!(
            !answer.contains(SECRET),
            "a command's env value returned: {answer}"
        );
    }
    files
        .write_file(pb::WriteFileRequest {
            sandbox_id: sandbox.id.clone(),
            path: "notes.txt".into(),
            content: SECRET.as_bytes().to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_code(
        intruder
            .delete_sandbox(pb::DeleteSandboxRequest {
                sandbox_id: sandbox.id.clone(),
            })
            .await,
        Code::NotFound,
        "another tenant's delete",
    );
    sandboxes
        .delete_sandbox(pb::DeleteSandboxRequest {
            sandbox_id: sandbox.id.clone(),
        })
        .await
        .unwrap();

    let key_id = |key: &str| {
        keys(data.path(), &["list"])
            .unwrap()
            .lines()
            .find(|line| line.contains(key))
            .map(|line| line.split_whitespace().next().unwrap().to_owned())
    };
    let (alice_id, mallory_id) = (key_id("alice").unwrap(), key_id("mallory").unwrap());
    let wanted = [
        ("alice", &alice_id, "create", "", "ok"),
        (
            "alice",
            &alice_id,
            "run",
            "sh -c test ${#DB_PASSWORD}${#API_TOKEN} = 2010",
            "ok",
        ),
        ("alice", &alice_id, "start command", "true", "ok"),
        ("alice", &alice_id, "write file", "notes.txt", "ok"),
        ("mallory", &mallory_id, "delete", "", "NOT_FOUND"),
        ("alice", &alice_id, "delete", "", "ok"),
    ];
    let trail = common::eventually(Duration::from_secs(10), "the audit trail", || {
        let lines = server.log_lines();
        async move {
            let trail: Vec<serde_json::Value> = lines
                .into_iter()
                .filter(|line| line["target"] == "audit")
                .collect();
            (trail.len() >= wanted.len()).then_some(trail)
        }
    })
    .await;
    assert_eq!(trail.len(), wanted.len(), "one event per call: {trail:#?}");
    for (event, (tenant, key_id, action, detail, outcome)) in trail.iter().zip(wanted) {
        assert_eq!(event["tenant"], tenant, "{event}");
        assert_eq!(&event["key_id"], key_id.as_str(), "{event}");
        assert_eq!(event["action"], action, "{event}");
        assert_eq!(event["sandbox_id"], sandbox.id.as_str(), "{event}");
        if !detail.is_empty() {
            assert_eq!(event["detail"], detail, "{event}");
        }
        assert_eq!(event["outcome"], outcome, "{event}");
    }

    // Only the command line is the caller's own text; nothing else of theirs
    // is logged: no env value, no file content, no key.
    for line in server.log_lines() {
        let text = line.to_string();
        assert!(!text.contains(SECRET), "a secret in the log: {text}");
        assert!(
            !text.contains(&alice) && !text.contains(&mallory),
            "a key in the log: {text}"
        );
        assert!(
            !text.contains("tok-987654"),
            "an env value in the log: {text}"
        );
    }
}
