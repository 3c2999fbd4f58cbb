//! The command line: `paddock serve --help` documents every setting, and bad
//! settings stop the server with a sentence before it binds anything.

use std::process::Command;

fn paddock(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(args)
        .env_remove("PADDOCK_LISTEN")
        .output()
        .expect("run paddock")
}

#[test]
fn serve_help_documents_every_setting_and_its_variable() {
    let output = paddock(&["serve", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for (flag, variable) in [
        ("--config", "PADDOCK_CONFIG"),
        ("--listen", "PADDOCK_LISTEN"),
        ("--data-dir", "PADDOCK_DATA_DIR"),
        ("--database-url", "PADDOCK_DATABASE_URL"),
        ("--provider", "PADDOCK_PROVIDER"),
        ("--default-timeout", "PADDOCK_DEFAULT_TIMEOUT"),
        ("--max-timeout", "PADDOCK_MAX_TIMEOUT"),
        ("--provider-call-timeout", "PADDOCK_PROVIDER_CALL_TIMEOUT"),
        ("--reap-interval", "PADDOCK_REAP_INTERVAL"),
        ("--shutdown-grace", "PADDOCK_SHUTDOWN_GRACE"),
        ("--log-format", "PADDOCK_LOG_FORMAT"),
        ("--log", "PADDOCK_LOG"),
        ("--agent-binary", "PADDOCK_AGENT_BINARY"),
        (
            "--max-commands-per-sandbox",
            "PADDOCK_MAX_COMMANDS_PER_SANDBOX",
        ),
        ("--max-commands", "PADDOCK_MAX_COMMANDS"),
        ("--command-output-budget", "PADDOCK_COMMAND_OUTPUT_BUDGET"),
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
        assert!(help.contains(variable), "--help lacks {variable}:\n{help}");
    }
    assert!(
        help.contains("127.0.0.1:50051"),
        "the default address is shown"
    );
    assert!(
        !help.contains("test-process-create-delay"),
        "test knobs stay hidden"
    );
}

#[test]
fn bad_settings_are_refused_with_a_sentence() {
    for (args, expected) in [
        (
            &["serve", "--listen", "nowhere"][..],
            "neither HOST:PORT nor unix:PATH",
        ),
        (
            &["serve", "--provider", "kvm"][..],
            "provider \"kvm\" is unknown",
        ),
        (
            &["serve", "--default-timeout", "soon"][..],
            "default_timeout \"soon\"",
        ),
        (
            &["serve", "--command-output-budget", "1MiB"][..],
            "below the least, 8MiB",
        ),
    ] {
        let output = paddock(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
