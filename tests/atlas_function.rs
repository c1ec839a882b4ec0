//! The Atlas side (`atlas-function/`), tested against this handler: runs the JavaScript
//! tests in `atlas-function/test/` with Node's built-in test runner (`node --test`). They
//! load the real Atlas function sources into a harness that provides what Atlas provides
//! (`context` with real HTTP, values and collections; `EJSON`/`BSON` from MongoDB's npm
//! `bson` package) and start the `handler` binary of this build.
//!
//! Needs Node.js 18 or newer. Without it this test fails and says so: it never skips.
//! The pinned `bson` package is installed with `npm ci` when `node_modules` lacks it.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::corpus_dir;

/// The node tests take about ten seconds; this only guards against a hang.
const TIMEOUT: Duration = Duration::from_secs(600);

fn atlas_function_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("atlas-function")
}

/// The major version of `node` on the PATH; panics with instructions if there is none.
fn node_major_version() -> u32 {
    let output = match Command::new("node").arg("--version").output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "node is not installed (or not on the PATH): the Atlas function tests in \
             atlas-function/ need Node.js 18 or newer (https://nodejs.org). \
             They do not skip; install Node.js and run `cargo test --workspace` again."
        ),
        Err(error) => panic!("cannot run `node --version`: {error}"),
    };
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the node version from {version:?}"))
}

/// The `bson` version `package.json` pins.
fn pinned_bson(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("package.json")).expect("package.json");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("package.json is JSON");
    manifest["devDependencies"]["bson"]
        .as_str()
        .expect("package.json pins bson")
        .to_owned()
}

/// The `bson` version in `node_modules`, if any.
fn installed_bson(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("node_modules/bson/package.json")).ok()?;
    let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
    manifest["version"].as_str().map(str::to_owned)
}

/// Installs the locked dev dependency (`bson`) when it is missing or another version.
fn install_dependencies(dir: &Path) {
    if installed_bson(dir).is_some_and(|version| version == pinned_bson(dir)) {
        return;
    }
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let status = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run `npm ci` in {} ({error}): npm (part of Node.js) installs the \
                 tests' pinned bson package",
                dir.display()
            )
        });
    assert!(
        status.success(),
        "`npm ci --no-audit --no-fund` failed in {} ({status}); the npm registry must be \
         reachable once to install the pinned bson package",
        dir.display()
    );
}

#[test]
fn atlas_function_tests_pass_against_the_handler() {
    let dir = atlas_function_dir();
    let major = node_major_version();
    assert!(
        major >= 18,
        "node {major} is too old: the Atlas function tests need Node.js 18 or newer \
         (node:test and fetch)"
    );
    install_dependencies(&dir);

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
        .env("BSON_CORPUS_DIR", corpus_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so a hung run can be stopped with every handler it started.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().expect("node starts");

    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr")));

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("node is waited for") {
            break Some(status);
        }
        if started.elapsed() > TIMEOUT {
            #[cfg(unix)]
            // SAFETY: signals the process group created above; no memory is involved.
            unsafe {
                libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
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
