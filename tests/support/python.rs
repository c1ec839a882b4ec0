//! Python from PyPI for tests that check the lake with another implementation (pyarrow
//! reading our Parquet, DuckDB running the README's SQL): a virtualenv with the pinned
//! `tests/python/requirements.txt`, made once under the target directory and reused.
//! The deployment template's scanner (checkov) has a virtualenv of its own
//! (`requirements-checkov.txt`): its pinned dependencies would fight the readers'.
//!
//! Never skips: without `python3`, its `venv` module or a reachable PyPI, the test fails
//! and says what to install.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// A pinned requirements file and how pip installs it; the text's hash names the
/// virtualenv, so editing the file makes a new one.
struct Requirements {
    file: &'static str,
    text: &'static str,
    /// Besides `--only-binary :all:` (a source build would take the CI's time).
    exceptions: &'static [&'static str],
}

/// The lake's independent readers. pyspark is published only as a pure-Python sdist:
/// building it is a copy.
const READERS: Requirements = Requirements {
    file: "requirements.txt",
    text: include_str!("../python/requirements.txt"),
    exceptions: &["--no-binary", "pyspark"],
};

/// The static scanner of `deploy/azuredeploy.json`.
const CHECKOV: Requirements = Requirements {
    file: "requirements-checkov.txt",
    text: include_str!("../python/requirements-checkov.txt"),
    exceptions: &[],
};

/// moto's S3 server (tests/support/moto.rs).
const MOTO: Requirements = Requirements {
    file: "requirements-moto.txt",
    text: include_str!("../python/requirements-moto.txt"),
    exceptions: &[],
};

/// moto's server from its own virtualenv, made on first use, run as a module (as
/// [`checkov`]).
pub fn moto_server() -> Command {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    let python = PYTHON.get_or_init(|| venv(&MOTO).join("bin").join("python"));
    let mut command = Command::new(python);
    command.args(["-m", "moto.server"]);
    command
}

/// The test virtualenv's `python`, made on first use (in this process or an earlier one).
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| venv(&READERS).join("bin").join("python"))
}

/// `checkov` from its own virtualenv, made on first use. Run as a module: the entry
/// scripts pip writes name the folder the virtualenv was built in, renamed since.
pub fn checkov() -> Command {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    let python = PYTHON.get_or_init(|| venv(&CHECKOV).join("bin").join("python"));
    let mut command = Command::new(python);
    command.args(["-m", "checkov.main"]);
    command
}

/// Runs a Python script file with the test virtualenv and `args`; returns its stdout.
/// Fails the test with the script's stderr if it exits non-zero.
pub fn run_script<A: AsRef<OsStr>>(script: &Path, args: &[A]) -> String {
    let output = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python().display()));
    success(&format!("python {}", script.display()), output)
}

/// Runs a Python script file with the test virtualenv, `args`, and `input` on its standard
/// input; returns its output, whatever its exit status.
pub fn run_with_input<A: AsRef<OsStr>>(script: &Path, args: &[A], input: &[u8]) -> Output {
    let mut child = Command::new(python())
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python().display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("input sent");
    child.wait_with_output().expect("python ends")
}

/// A script of `tests/python/` by file name.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// The virtualenv folder, complete: made if missing. Test processes race to make it, so
/// each builds in a folder of its own and renames it into place; a loser throws its copy
/// away and uses the winner's (a rename never lands on a complete virtualenv).
fn venv(requirements: &Requirements) -> PathBuf {
    let hash = hex::encode(Sha256::digest(requirements.text.as_bytes()));
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let done = root.join(format!("python-venv-{}", &hash[..16]));
    if done.join("bin/python").exists() {
        return done;
    }
    std::fs::create_dir_all(&root).expect("target tmp dir");
    let building = root.join(format!(
        ".python-venv-{}-{}",
        &hash[..16],
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&building);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&building)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "python3 is not installed ({error}); these tests need Python 3.10+ with venv \
                 and pip (Debian: apt-get install python3 python3-venv). They never skip."
            )
        });
    success(
        "python3 -m venv (Debian: apt-get install python3-venv)",
        made,
    );
    let file = script(requirements.file);
    let installed = Command::new(building.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--only-binary", ":all:"])
        .args(requirements.exceptions)
        .arg("-r")
        .arg(&file)
        .output()
        .expect("the new virtualenv's python runs");
    success(
        &format!("pip install -r {} (needs PyPI)", file.display()),
        installed,
    );
    if let Err(error) = std::fs::rename(&building, &done) {
        // Another test process got there first: its virtualenv is as good as ours.
        let _ = std::fs::remove_dir_all(&building);
        assert!(
            done.join("bin/python").exists(),
            "cannot move the virtualenv into {}: {error}",
            done.display()
        );
    }
    done
}

/// The stdout of a command that succeeded; otherwise the test fails, saying which.
fn success(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}
