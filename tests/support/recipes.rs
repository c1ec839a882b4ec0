//! The README's query recipes as they stand, run by a real engine (DuckDB from PyPI, in
//! the test virtualenv) over a lake in a folder: its fenced SQL blocks, pointed at the
//! folder instead of `./lake`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

use serde_json::Value;

use super::python;

/// Runs a script of `tests/python/` with `input` on its standard input and returns the
/// JSON rows it prints, one a line.
pub fn run_python(script: &str, input: &str) -> Vec<Value> {
    let no_args: [&str; 0] = [];
    let output = python::run_with_input(&python::script(script), &no_args, input.as_bytes());
    assert!(
        output.status.success(),
        "{script} failed on:\n{input}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON row"))
        .collect()
}

/// Runs `sql` in DuckDB and returns the last statement's rows.
pub fn duckdb(sql: &str) -> Vec<Value> {
    run_python("query_duckdb.py", sql)
}

/// The fenced block right after `<!-- NAME -->` in README.md.
pub fn readme_block(name: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let marker = format!("<!-- {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"))
        .1;
    after
        .trim_start()
        .strip_prefix("```")
        .and_then(|rest| rest.split_once('\n'))
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .unwrap_or_else(|| panic!("no fenced block right after {marker}"))
        .0
        .to_owned()
}

/// A README block with its lake location `from` replaced by `to`.
pub fn pointed_at(block: &str, from: &str, to: &str) -> String {
    assert!(block.contains(from), "the block reads {from}:\n{block}");
    block.replace(from, to)
}

/// A README DuckDB view of the records (`source`), reading `lake` instead of `./lake`.
pub fn duckdb_source(source: &str, lake: &Path) -> String {
    let block = readme_block(&format!("duckdb: {source}"));
    pointed_at(&block, "'lake/", &format!("'{}/", lake.display()))
}

/// The README's current-state view over the README's view of `source` (the recipes read
/// `sample_mflix.movies`), run by DuckDB: rows of `documentKey`, `eventId` and `data`.
pub fn duckdb_current_rows(source: &str, lake: &Path) -> Vec<Value> {
    duckdb(&format!(
        "{}\n{}\nSELECT documentKey, eventId, data FROM movies_current;",
        duckdb_source(source, lake),
        readme_block("duckdb: current-state")
    ))
}

/// Where two states (key -> state) differ, one line per key, in key order: empty when
/// they are equal.
pub fn differences<V: Debug + PartialEq>(
    expected: &BTreeMap<String, V>,
    actual: &BTreeMap<String, V>,
) -> Vec<String> {
    let mut keys: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| expected.get(*key) != actual.get(*key))
        .map(|key| {
            format!(
                "{key}: expected {:?}, got {:?}",
                expected.get(key),
                actual.get(key)
            )
        })
        .collect()
}
