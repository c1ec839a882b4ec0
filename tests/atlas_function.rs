//! The Atlas side (`atlas-function/`), tested against this handler: runs the JavaScript
//! tests in `atlas-function/test/` with Node's built-in test runner (`node --test`). They
//! load the real Atlas function sources into a harness that provides what Atlas provides
//! (`context` with real HTTP, values and collections; `EJSON`/`BSON` from MongoDB's npm
//! `bson` package) and start the `handler` binary of this build.
//!
//! Needs Node.js 18 or newer. Without it this test fails and says so: it never skips.
//! The pinned `bson` package is installed with `npm ci` when `node_modules` lacks it.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::{corpus_dir, node};

/// The node tests take about ten seconds; this only guards against a hang.
const TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn atlas_function_tests_pass_against_the_handler() {
    let dir = node::prepare();

    // The test files by name: from Node 21 on, `node --test <dir>` reads the directory as
    // a module path instead of searching it.
    let mut tests: Vec<PathBuf> = std::fs::read_dir(dir.join("test"))
        .expect("atlas-function/test")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(".test.js"))
        .collect();
    tests.sort();
    assert!(
        !tests.is_empty(),
        "no *.test.js files in atlas-function/test"
    );
    let mut command = Command::new("node");
    command
        .arg("--test")
        .args(&tests)
        .current_dir(&dir)
        .env("HANDLER_BIN", env!("CARGO_BIN_EXE_handler"))
        .env("BSON_CORPUS_DIR", corpus_dir());
    let node::Run {
        status,
        stdout,
        stderr,
    } = node::run(command, TIMEOUT);
    println!("{stdout}");
    eprintln!("{stderr}");

    let Some(status) = status else {
        panic!("the Atlas function tests did not finish within {TIMEOUT:?}; output above");
    };
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|line| {
            line.starts_with("# tests") || line.starts_with("# pass") || line.starts_with("# fail")
        })
        .collect();
    assert!(
        status.success(),
        "the Atlas function tests failed ({status}; {}); their output is above",
        summary.join(", ")
    );
    let passed = stdout
        .lines()
        .find_map(|line| line.strip_prefix("# pass "))
        .and_then(|count| count.trim().parse::<u32>().ok())
        .unwrap_or(0);
    assert!(passed > 0, "node ran no tests: {}", summary.join(", "));
}
