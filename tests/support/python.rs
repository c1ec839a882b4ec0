//! Python from PyPI for tests that check the lake with another implementation (pyarrow
//! reading our Parquet, DuckDB running the README's SQL): a virtualenv with the pinned
//! `tests/python/requirements.txt`, made once under the target directory and reused.
//!
//! Never skips: without `python3`, its `venv` module or a reachable PyPI, the test fails
//! and says what to install.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The pinned requirements; their hash names the virtualenv, so editing them makes a new one.
const REQUIREMENTS: &str = include_str!("../python/requirements.txt");

/// The test virtualenv's `python`, made on first use (in this process or an earlier one).
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| venv().join("bin").join("python"))
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

/// A script of `tests/python/` by file name.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// The virtualenv folder, complete: made if missing. Test processes race to make it, so
/// each builds in a folder of its own and renames it into place; a loser throws its copy
/// away and uses the winner's (a rename never lands on a complete virtualenv).
fn venv() -> PathBuf {
    let hash = hex::encode(Sha256::digest(REQUIREMENTS.as_bytes()));
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
    let requirements = script("requirements.txt");
    let installed = Command::new(building.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--only-binary", ":all:", "--no-binary", "pyspark", "-r"])
        .arg(&requirements)
        .output()
        .expect("the new virtualenv's python runs");
    success(
        &format!("pip install -r {} (needs PyPI)", requirements.display()),
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
