//! The API's compatibility check: `buf breaking`, which scripts/proto-compat
//! runs on every commit that changes `proto/`, refuses a renumbered field
//! and passes the protos as they are.
//!
//! buf comes from `PADDOCK_TEST_BUF` (scripts/test installs it in .tools/);
//! without it the test skips, and fails under CI=true.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of the checkout's buf workspace (buf.yaml and proto/) in `to`.
fn copy_workspace(to: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("buf.yaml"), to.join("buf.yaml")).unwrap();
    let mut folders = vec![PathBuf::from("proto")];
    while let Some(folder) = folders.pop() {
        std::fs::create_dir_all(to.join(&folder)).unwrap();
        for entry in std::fs::read_dir(root.join(&folder)).unwrap() {
            let entry = entry.unwrap();
            let relative = folder.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                folders.push(relative);
            } else {
                std::fs::copy(entry.path(), to.join(&relative)).unwrap();
            }
        }
    }
}

fn breaking(buf: &Path, changed: &Path, against: &Path) -> (bool, String) {
    let output = Command::new(buf)
        .arg("breaking")
        .arg(changed)
        .arg("--against")
        .arg(against)
        .output()
        .expect("buf runs");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

#[test]
fn buf_breaking_refuses_a_renumbered_field_and_passes_the_api_as_it_is() {
    let Some(buf) = common::program_from("PADDOCK_TEST_BUF") else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let changed = tempfile::tempdir().unwrap();
    copy_workspace(base.path());
    copy_workspace(changed.path());

    let (same, said) = breaking(&buf, changed.path(), base.path());
    assert!(same, "the protos are compatible with themselves: {said}");

    let exec = changed.path().join("proto/paddock/v1/exec.proto");
    let text = std::fs::read_to_string(&exec).unwrap();
    assert!(
        text.contains("  CommandSpec spec = 9;\n"),
        "the field to renumber is there"
    );
    std::fs::write(
        &exec,
        text.replace("  CommandSpec spec = 9;\n", "  CommandSpec spec = 10;\n"),
    )
    .unwrap();
    let (compatible, said) = breaking(&buf, changed.path(), base.path());
    assert!(!compatible, "a renumbered field is a break: {said}");
    assert!(
        said.contains("RunCommandRequest") && said.contains("\"9\""),
        "buf names the field: {said}"
    );
}
