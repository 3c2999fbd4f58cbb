//! Fault-injection points for the crash tests, compiled only with the
//! `test-hooks` feature (`scripts/test` turns it on; release builds, the
//! static agent and `scripts/serve` never have it).
//!
//! A gate holds a lifecycle step until the test lets it go, so that a test
//! can kill the server while steps are in flight at a point it chose,
//! instead of racing a timer. With `PADDOCK_TEST_GATE` naming a directory,
//! each step reaching a gate writes `<point>.<sandbox id>` there and waits
//! until a file `open` appears; without the variable, gates do nothing.

use std::path::PathBuf;
use std::time::Duration;

/// The variable naming the gate directory.
pub const GATE_VARIABLE: &str = "PADDOCK_TEST_GATE";

/// Holds the step `point` of sandbox `sandbox_id` at its gate, if gates are
/// set up.
pub async fn gate(point: &str, sandbox_id: &str) {
    let Some(dir) = std::env::var_os(GATE_VARIABLE).map(PathBuf::from) else {
        return;
    };
    if let Err(error) = std::fs::write(dir.join(format!("{point}.{sandbox_id}")), b"") {
        tracing::warn!(%error, "cannot mark the arrival at a test gate");
    }
    while !dir.join("open").exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
