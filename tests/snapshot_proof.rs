//! Issue #12's proof, end to end: a collection of 10,000 documents with `_id`s of every
//! type is snapshotted by the real `lakeSnapshot` (in the Atlas harness,
//! `atlas-function/test/snapshot_scenario.js`) into the real handler over several runs,
//! each cut by a small time or operation budget, one in an outage; inserts, updates and
//! deletes behind and ahead of the snapshot's cursor go through the trigger's function
//! meanwhile (those in the outage dead-lettered, then redriven). Afterwards the
//! collection's final state (written by the script) must be what the README's DuckDB
//! current-state query returns over the change files and over the hourly files (JSON
//! lines and Parquet), and what the reference replicator (the Fabric stand-in) holds after
//! `handler mirror`. Nothing here is Atlas itself: the harness stands in for it.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use support::handler::{run_within, Handler};
use support::{node, recipes, replicator};

/// The secret the harness signs with (`atlas-function/harness/index.js`).
const SECRET: &str = "atlas-function-test-secret-0123456789";
/// The collection the README's recipes read, and its table in the landing zone.
const TABLE: &str = "sample_mflix.schema/movies";
/// Guards against a hang only: the scenario takes about half a minute in a debug build.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(600);
/// A compaction or mirror pass over some 13,000 change files in a debug build.
const PASS_DEADLINE: Duration = Duration::from_secs(600);

/// Compact, order-keeping text of a JSON value: how documents and keys are compared.
fn text(value: &Value) -> String {
    serde_json::to_string(value).expect("JSON")
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("JSON ({e}): {text}"))
}

/// The collection's final state as the script wrote it: `documentKey` text -> document text.
fn expected_state(out: &Path) -> BTreeMap<String, Value> {
    let lines = std::fs::read_to_string(out.join("expected.jsonl")).expect("expected.jsonl");
    lines
        .lines()
        .map(|line| {
            let entry = parse(line);
            (text(&entry["documentKey"]), entry["document"].clone())
        })
        .collect()
}

/// Fails, listing (a few of) the documents whose state differs, unless they are equal.
fn assert_same(what: &str, expected: &BTreeMap<String, String>, actual: &BTreeMap<String, String>) {
    let wrong = recipes::differences(expected, actual);
    assert!(
        wrong.is_empty(),
        "{what}: {} of {} documents wrong; the first:\n{}",
        wrong.len(),
        expected.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
}

/// The README's current-state query over `source`: `documentKey` text -> document text.
fn lake_state(source: &str, lake: &Path) -> BTreeMap<String, String> {
    let mut state = BTreeMap::new();
    for row in recipes::duckdb_current_rows(source, lake) {
        let field = |name: &str| parse(row[name].as_str().expect("text"));
        let key = text(&field("documentKey"));
        assert!(
            state.insert(key, text(&field("data"))).is_none(),
            "{source}: one row per document: {row}"
        );
    }
    state
}

/// The key column's text of an `_id` (issue #10: an ObjectId as its hex digits, a string
/// as it is, anything else as canonical Extended JSON, compared parsed).
fn key_column(id: &Value) -> String {
    match id {
        Value::String(text) => text.clone(),
        Value::Object(map) if map.contains_key("$oid") => {
            map["$oid"].as_str().expect("hex").to_owned()
        }
        other => text(other),
    }
}

/// A key column's text, normalised: Extended JSON parsed and written compactly.
fn normal_key(key: &str) -> String {
    match serde_json::from_str::<Value>(key) {
        Ok(value @ (Value::Object(_) | Value::Null | Value::Bool(_))) => text(&value),
        _ => key.to_owned(),
    }
}

/// What a field of the scenario's documents (strings and 32-bit integers) becomes in the
/// table: the string, or the number in an int64 column.
fn column_value(field: &str, value: &Value) -> Value {
    match value {
        Value::String(_) => value.clone(),
        Value::Object(map) if map.contains_key("$numberInt") => {
            let digits = map["$numberInt"].as_str().expect("digits");
            Value::from(digits.parse::<i64>().expect("an int32"))
        }
        other => panic!("the scenario's documents hold strings and int32s, not {field}: {other}"),
    }
}

/// The expected table: key column text -> non-null columns (besides `_id`).
fn expected_table(expected: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    expected
        .values()
        .map(|document| {
            let mut row = Map::new();
            for (field, value) in document.as_object().expect("a document") {
                if field != "_id" {
                    row.insert(field.clone(), column_value(field, value));
                }
            }
            (
                normal_key(&key_column(&document["_id"])),
                text(&Value::Object(row)),
            )
        })
        .collect()
}

/// The replicated table in the same shape.
fn replicated_table(state: &Path) -> BTreeMap<String, String> {
    let dump = replicator::dump(state);
    let table = &dump[TABLE];
    assert!(table.is_object(), "no table {TABLE}: {dump}");
    assert_eq!(table["columns"]["_id"], "string", "{}", table["columns"]);
    table["rows"]
        .as_object()
        .expect("rows")
        .iter()
        .map(|(key, row)| {
            let row = row.as_object().expect("a row");
            assert_eq!(
                row["_id"].as_str(),
                Some(key.as_str()),
                "the key is the _id column"
            );
            let columns: Map<String, Value> = row
                .iter()
                .filter(|(name, value)| *name != "_id" && !value.is_null())
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            (normal_key(key), text(&Value::Object(columns)))
        })
        .collect()
}

/// The UTC hour (`YYYY-MM-DDTHH`) of a Unix time, as `handler compact` takes it.
fn hour_of(seconds: &Value) -> String {
    let seconds = seconds.as_i64().expect("seconds");
    let date = bson::DateTime::from_millis(seconds * 1000)
        .try_to_rfc3339_string()
        .expect("a date");
    date[..13].to_owned()
}

/// Runs `handler <args>` with `vars` and returns its JSON summary (it must succeed).
fn pass(args: &[&str], vars: &[(&str, &str)]) -> Value {
    let output = run_within(args, vars, PASS_DEADLINE);
    assert!(
        output.status.success(),
        "handler {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse(
        stdout
            .lines()
            .last()
            .unwrap_or_else(|| panic!("no summary: {stdout}")),
    )
}

#[test]
fn a_snapshot_of_10000_documents_over_runs_an_outage_and_changes_ends_in_the_collections_state() {
    let atlas = node::prepare();
    let started = Instant::now();
    let phase = |what: &str| eprintln!("{what}: {:.1} s", started.elapsed().as_secs_f64());
    let lake = tempfile::tempdir().expect("lake");
    let landing = tempfile::tempdir().expect("landing zone");
    let side = tempfile::tempdir().expect("expected state and the replicator's");
    let lake_dir = lake.path().display().to_string();
    let landing_dir = landing.path().display().to_string();
    let vars = [
        ("LOCAL_LAKE_DIR", lake_dir.as_str()),
        ("LOCAL_LAKE_FSYNC", "false"),
        ("RECORD_ENCODING", "canonical"),
        ("COMPACT_FORMAT", "jsonl,parquet"),
        ("MIRROR_LOCAL_DIR", landing_dir.as_str()),
    ];
    let mut settings = vars.to_vec();
    settings.push(("INGEST_HMAC_SECRET", SECRET));
    let handler = Handler::start(lake.path(), &settings);

    let mut command = Command::new("node");
    command
        .arg("test/snapshot_scenario.js")
        .arg(handler.url("/api/ingest"))
        .arg(side.path())
        .current_dir(&atlas);
    let run = node::run(command, SCENARIO_DEADLINE);
    let status = run
        .status
        .unwrap_or_else(|| panic!("the scenario still ran after {SCENARIO_DEADLINE:?}"));
    assert!(
        status.success(),
        "the scenario failed ({status}):\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let summary = parse(run.stdout.trim());
    eprintln!("scenario: {summary}");
    phase("the snapshot and the changes");
    handler.terminate();
    let (code, _) = handler.wait();
    assert_eq!(code, Some(0), "the handler stops cleanly");

    // The scenario did what the issue asks for, or the proof proves less.
    assert_eq!(summary["documents"], 10_000, "{summary}");
    let stops = summary["stops"].as_array().expect("stops");
    for budget in ["run budget", "operation budget"] {
        let cut = stops.iter().filter(|stop| *stop == budget).count();
        assert!(cut >= 2, "several runs cut by the {budget}: {summary}");
    }
    let outage = &summary["outage"];
    assert!(outage["run"].is_u64(), "a run met the outage: {summary}");
    assert!(
        outage["deadLettered"].as_u64() > Some(0) && outage["redriven"] == outage["deadLettered"],
        "the trigger's changes in the outage were dead-lettered, then redriven: {summary}"
    );
    for change in ["insert", "update", "delete"] {
        for side in ["behind", "ahead"] {
            let count = summary["changes"][format!("{change} {side}")].as_u64();
            assert!(
                count.unwrap_or(0) > 0,
                "no {change} {side} of the cursor: {summary}"
            );
        }
    }
    assert!(
        summary["snapshotEvents"].as_u64() > summary["sent"].as_u64(),
        "stopped runs sent pages again: {summary}"
    );

    let expected = expected_state(side.path());
    let documents: BTreeMap<String, String> = expected
        .iter()
        .map(|(key, document)| (key.clone(), text(document)))
        .collect();

    // Check 1: the README's current-state query over the change files.
    assert_same(
        "DuckDB over the change files",
        &documents,
        &lake_state("change-files", lake.path()),
    );
    phase("DuckDB over the change files");

    // The hourly files (JSON lines, Parquet): every hour from S to the last change.
    let from = hour_of(&summary["snapshotTime"]["t"]);
    let to = hour_of(&summary["lastClusterTime"]["t"]);
    let compacted = pass(&["compact", "--from", &from, "--to", &to], &vars);
    assert!(compacted["partsWritten"].as_u64() > Some(0), "{compacted}");
    phase("compaction");
    assert_same(
        "DuckDB over the hourly JSON lines",
        &documents,
        &lake_state("changes-hourly-jsonl", lake.path()),
    );
    assert_same(
        "DuckDB over the hourly Parquet files",
        &documents,
        &lake_state("changes-hourly-parquet", lake.path()),
    );
    phase("DuckDB over the hourly files");

    // Check 2: the mirror, then the reference replicator over the landing zone.
    pass(&["mirror"], &vars);
    phase("the mirror");
    let state = side.path().join("replicator.json");
    if let Err(message) = replicator::apply(landing.path(), &state) {
        panic!("the landing zone breaks the contract: {message}");
    }
    assert_same(
        "the replicated table",
        &expected_table(&expected),
        &replicated_table(&state),
    );
    phase("the replicator");
}
