//! The command-line client's commands against a spawned server: `paddock
//! cp` round-trips a 200 MiB tree byte for byte, `paddock logs -f` follows
//! a detached command to its exit code, `paddock run` passes the exit code
//! through, and `-o json`, `paddock watch`, the address from PADDOCK_ADDR or
//! a config file, and shell completions work as scripts use them.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

fn paddock(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(args)
        .env("PADDOCK_ADDR", server)
        .env_remove("PADDOCK_API_KEY")
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .expect("run paddock")
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// What a tree holds: each path, relative, with its kind and content hash
/// (or link target).
fn inventory(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut found = BTreeMap::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let kind = entry.file_type().unwrap();
            let what = if kind.is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if kind.is_dir() {
                folders.push(path);
                "dir".to_owned()
            } else {
                let mut digest = Sha256::new();
                std::io::copy(&mut std::fs::File::open(&path).unwrap(), &mut digest).unwrap();
                format!("file {:x}", digest.finalize())
            };
            found.insert(relative, what);
        }
    }
    found
}

/// A file of `size` bytes in which every 8-byte word is its own offset, so
/// that a chunk out of place changes the hash.
fn counted_file(path: &Path, size: u64, seed: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for word in 0..size / 8 {
        out.write_all(&(word ^ seed).to_le_bytes()).unwrap();
    }
    out.write_all(&vec![7; (size % 8) as usize]).unwrap();
}

#[test]
fn cp_moves_a_200_mib_tree_both_ways_byte_for_byte() {
    let data = tempfile::tempdir().unwrap();
    let server = common::spawned::ServerProcess::spawn(data.path());
    let url = server.url();
    ok(paddock(&url, &["sandbox", "create", "--name", "copies"]));

    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("src/deep/er")).unwrap();
    std::fs::create_dir_all(tree.join("empty")).unwrap();
    counted_file(&tree.join("large.bin"), 150 << 20, 1);
    counted_file(&tree.join("src/medium.bin"), (50 << 20) - 12_345, 2);
    for n in 0..20 {
        counted_file(&tree.join(format!("src/deep/er/small-{n}.txt")), n * 100, n);
    }
    std::os::unix::fs::symlink("src/medium.bin", tree.join("link")).unwrap();

    // Into a directory that does not exist yet: the tree is copied as it.
    let said = ok(paddock(
        &url,
        &["cp", tree.to_str().unwrap(), "copies:work/tree"],
    ));
    assert!(said.contains("-> work/tree: "), "{said}");
    // Back into an existing directory: the tree lands inside it.
    let back = local.path().join("back");
    std::fs::create_dir(&back).unwrap();
    ok(paddock(
        &url,
        &["cp", "copies:work/tree", back.to_str().unwrap()],
    ));
    assert_eq!(
        inventory(&back.join("tree")),
        inventory(&tree),
        "the tree came back as it went"
    );

    // One file both ways, renamed on the way back.
    ok(paddock(
        &url,
        &[
            "cp",
            tree.join("large.bin").to_str().unwrap(),
            "copies:one.bin",
        ],
    ));
    let again = local.path().join("again.bin");
    ok(paddock(
        &url,
        &["cp", "copies:one.bin", again.to_str().unwrap()],
    ));
    assert!(
        std::fs::read(&again).unwrap() == std::fs::read(tree.join("large.bin")).unwrap(),
        "the file came back byte for byte"
    );

    for (args, expected) in [
        (["cp", "/tmp/a", "/tmp/b"], "neither side names a sandbox"),
        (["cp", "copies:a", "copies:b"], "both sides name a sandbox"),
        (
            ["cp", "copies:no/such/thing", "/tmp/x"],
            "no such file or directory in the sandbox",
        ),
    ] {
        let refused = paddock(&url, &args);
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains(expected), "{said}");
    }
}

#[test]
fn logs_follows_a_detached_command_to_its_exit_code() {
    let data = tempfile::tempdir().unwrap();
    let server = common::spawned::ServerProcess::spawn(data.path());
    let url = server.url();
    ok(paddock(&url, &["sandbox", "create", "--name", "worker"]));
    let script = "for i in $(seq 1 40); do echo out $i; echo err $i >&2; sleep 0.02; done; exit 7";
    let command = ok(paddock(
        &url,
        &["exec", "--detach", "worker", "--", "sh", "-c", script],
    ));
    let command = command.trim();
    assert!(command.starts_with("cmd_"), "{command}");

    let followed = paddock(&url, &["logs", "-f", "worker", command]);
    assert_eq!(followed.status.code(), Some(7), "{followed:?}");
    let expected =
        |stream: &str| -> String { (1..=40).map(|i| format!("{stream} {i}\n")).collect() };
    assert_eq!(String::from_utf8_lossy(&followed.stdout), expected("out"));
    assert_eq!(String::from_utf8_lossy(&followed.stderr), expected("err"));

    // Once it has ended, plain `logs` replays it all and says how it ended.
    let replayed = paddock(&url, &["logs", "worker", command]);
    assert_eq!(replayed.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&replayed.stdout), expected("out"));
}

#[test]
fn run_watch_json_config_and_completions_serve_scripts() {
    let data = tempfile::tempdir().unwrap();
    let server = common::spawned::ServerProcess::spawn(data.path());
    let url = server.url();

    let ran = paddock(
        &url,
        &[
            "run",
            "--rm",
            "--name",
            "brief",
            "--",
            "sh",
            "-c",
            "echo brief; exit 5",
        ],
    );
    assert_eq!(ran.status.code(), Some(5), "{ran:?}");
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "brief\n");
    let kept = paddock(&url, &["run", "--name", "kept", "--", "true"]);
    assert_eq!(kept.status.code(), Some(0), "{kept:?}");

    let listed: serde_json::Value =
        serde_json::from_str(&ok(paddock(&url, &["sandbox", "list", "-o", "json"]))).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|sandbox| sandbox["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kept"], "--rm deleted brief: {listed}");
    assert_eq!(listed[0]["state"], "SANDBOX_STATE_RUNNING");
    let shown: serde_json::Value = serde_json::from_str(&ok(paddock(
        &url,
        &["sandbox", "get", "kept", "-o", "json"],
    )))
    .unwrap();
    assert_eq!(shown["id"], listed[0]["id"]);
    let providers: serde_json::Value =
        serde_json::from_str(&ok(paddock(&url, &["sandbox", "providers", "-o", "json"]))).unwrap();
    assert!(
        providers
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "process")
    );

    // Every event so far, one JSON object per line, then it follows: ended
    // here after the replay by a timeout.
    let watched = Command::new("timeout")
        .args(["2", env!("CARGO_BIN_EXE_paddock"), "watch", "-o", "json"])
        .env("PADDOCK_ADDR", &url)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .output()
        .unwrap();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&watched.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let brief: Vec<&str> = events
        .iter()
        .filter(|event| event["sandbox"]["name"] == "brief")
        .map(|event| event["sandbox"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(brief.first(), Some(&"SANDBOX_STATE_PENDING"), "{events:?}");
    assert_eq!(brief.last(), Some(&"SANDBOX_STATE_DELETED"), "{events:?}");

    // The address from a config file when neither flag nor variable names
    // one.
    let config = tempfile::tempdir().unwrap();
    std::fs::create_dir(config.path().join("paddock")).unwrap();
    std::fs::write(
        config.path().join("paddock/client.toml"),
        format!("server = \"{url}\"\n"),
    )
    .unwrap();
    let from_file = Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(["sandbox", "list"])
        .env_remove("PADDOCK_ADDR")
        .env("XDG_CONFIG_HOME", config.path())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&from_file.stdout).contains("kept"),
        "{from_file:?}"
    );

    let completions = ok(paddock(&url, &["completions", "bash"]));
    assert!(
        completions.contains("_paddock()") && completions.contains("logs"),
        "a bash completion script"
    );
}
