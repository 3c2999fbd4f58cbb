//! The Helm chart `charts/paddock`, checked by tests/chart/check_chart.py
//! with Helm's own library (helm-python-sdk: lint, schema, render) and the
//! Kubernetes schemas (kubernetes-validate), from the interpreter in
//! `PADDOCK_TEST_CHART_PYTHON` (scripts/test makes it in .tools/). No
//! Kubernetes API server runs here: the chart is rendered and validated,
//! not installed.

mod common;

use std::path::Path;

#[test]
fn the_chart_lints_renders_validates_and_refuses_bad_values() {
    let Some(python) = common::program_from("PADDOCK_TEST_CHART_PYTHON") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(python)
        .arg(root.join("tests/chart/check_chart.py"))
        .arg(root.join("charts/paddock"))
        .output()
        .expect("run the chart checks");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the chart checks failed:\n{said}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        said.lines().last(),
        Some("all chart checks passed"),
        "{said}"
    );
}
