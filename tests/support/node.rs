//! Node.js for the Atlas side's scripts (`atlas-function/`): the version check, the pinned
//! `bson` package (installed with `npm ci` when missing), and a script run with a deadline
//! that stops it with every process it started.
//!
//! Needs Node.js 18 or newer. Without it a test fails and says so: it never skips.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub fn atlas_function_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("atlas-function")
}

/// The major version of `node` on the PATH; panics with instructions if there is none.
pub fn node_major_version() -> u32 {
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

/// Node 18 or newer, with the Atlas side's dependencies installed: ready to run its scripts.
pub fn prepare() -> PathBuf {
    let dir = atlas_function_dir();
    let major = node_major_version();
    assert!(
        major >= 18,
        "node {major} is too old: the Atlas function tests need Node.js 18 or newer \
         (node:test and fetch)"
    );
    install_dependencies(&dir);
    dir
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

/// How a node run ended: `None` if it was still running at the deadline (then it was
/// killed with its process group), and its whole output.
pub struct Run {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` (a node command) to its end or `deadline`, in a process group of its own
/// so that a hung run is stopped with every handler it started.
pub fn run(mut command: Command, deadline: Duration) -> Run {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
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
        if started.elapsed() > deadline {
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
    Run {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}
