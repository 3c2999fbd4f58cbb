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
    // The chart's Role must grant exactly what the provider uses.
    let access: Vec<serde_json::Value> = paddock::provider::API_ACCESS
        .iter()
        .map(|rule| {
            serde_json::json!({"group": rule.group, "resource": rule.resource, "verbs": rule.verbs})
        })
        .collect();
    let output = std::process::Command::new(python)
        .arg(root.join("tests/chart/check_chart.py"))
        .arg(root.join("charts/paddock"))
        .env(
            "PADDOCK_PROVIDER_API_ACCESS",
            serde_json::to_string(&access).unwrap(),
        )
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
