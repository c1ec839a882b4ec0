//! The reference replicator (`tests/python/replicator.py`): a stand-in for Fabric that
//! applies a landing zone to tables kept in a state file, with pyarrow reading the files.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::python;

/// Applies the landing zone's new files; `Err` holds the replicator's message when it
/// refuses something (a contract violation).
pub fn apply(landing: &Path, state: &Path) -> Result<(), String> {
    let output = Command::new(python::python())
        .arg(python::script("replicator.py"))
        .arg("apply")
        .arg(landing)
        .arg(state)
        .output()
        .expect("python runs");
    if output.status.success() {
        return Ok(());
    }
    let message = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        message.starts_with("replicator: "),
        "the replicator crashed instead of refusing: {message}"
    );
    Err(message)
}

/// The replicated tables: `{"<table path>": {"columns", "rows", "nextFile"}}`.
pub fn dump(state: &Path) -> Value {
    let text = python::run_script(
        &python::script("replicator.py"),
        &[Path::new("dump"), state],
    );
    serde_json::from_str(&text).expect("the dump is JSON")
}
