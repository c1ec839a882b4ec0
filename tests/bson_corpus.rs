//! Every BSON type reaches the lake exactly: MongoDB's own conformance corpus
//! (`tests/data/bson-corpus/`, or `BSON_CORPUS_DIR`) posted over HTTP as `fullDocument`s.
//!
//! - canonical records: the stored `data`, read back, is byte-for-byte the case's
//!   `canonical_bson` (types, values, key order), from canonical and degenerate input;
//! - relaxed records: the stored `data` is the case's relaxed Extended JSON, compared
//!   structurally (same keys in the same order, integers vs floats, same bits), and reads
//!   back to the same BSON as the spec's relaxed form;
//! - every `parseErrors` case is refused with 400 and writes nothing.

mod support;

use bson::{Bson, Document};
use serde_json::Value;
use support::{corpus_dir, insert_event, TestServer};

struct Case {
    name: String,
    canonical_bson: String,
    canonical_extjson: String,
    relaxed_extjson: Option<String>,
    degenerate_extjson: Option<String>,
    lossy: bool,
}

fn corpus_files() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path).expect("corpus file");
            (name, serde_json::from_str(&text).expect("corpus JSON"))
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        files.len() >= 30,
        "expected the whole corpus, found {} files",
        files.len()
    );
    files
}

fn valid_cases() -> Vec<Case> {
    let text = |case: &Value, key: &str| case[key].as_str().map(str::to_owned);
    let mut cases = Vec::new();
    for (file, corpus) in corpus_files() {
        for case in corpus["valid"].as_array().into_iter().flatten() {
            cases.push(Case {
                name: format!("{file}: {}", case["description"].as_str().unwrap_or("?")),
                canonical_bson: text(case, "canonical_bson").expect("canonical_bson"),
                canonical_extjson: text(case, "canonical_extjson").expect("canonical_extjson"),
                relaxed_extjson: text(case, "relaxed_extjson"),
                degenerate_extjson: text(case, "degenerate_extjson"),
                lossy: case["lossy"].as_bool().unwrap_or(false),
            });
        }
    }
    assert!(cases.len() > 600, "only {} valid cases", cases.len());
    cases
}

/// Posts `document` as the `fullDocument` of a fresh insert and returns the stored `data`.
async fn store(server: &TestServer, serial: u32, document: &str) -> Result<Value, String> {
    let event = insert_event(&format!("82{serial:08X}"), 1_600_000_000 + serial, document);
    let answer = server.post_json(&event).await;
    if answer.status != 200 {
        return Err(format!("status {}: {}", answer.status, answer.body));
    }
    let written = answer.written();
    let [path] = written.as_slice() else {
        return Err(format!("expected one file, got {}", answer.body));
    };
    Ok(server.record(path)["data"].clone())
}

fn to_bson_hex(data: &Value) -> Result<String, String> {
    let document = match Bson::try_from(data.clone()) {
        Ok(Bson::Document(document)) => document,
        other => return Err(format!("stored data is not a document: {other:?}")),
    };
    let bytes = document
        .to_vec()
        .map_err(|e| format!("cannot encode: {e}"))?;
    Ok(hex::encode_upper(bytes))
}

/// Structural JSON equality that, unlike `Value`'s `==`, keeps key order and tells
/// integers from floats and `-0.0` from `0.0`.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((ka, va), (kb, vb))| ka == kb && same_json(va, vb))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Number(x), Value::Number(y)) => match (x.is_f64(), y.is_f64()) {
            (true, true) => x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits),
            (false, false) => x == y,
            _ => false,
        },
        _ => a == b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canonical_records_hold_the_exact_bson() {
    let server = TestServer::start(&[("RECORD_ENCODING", "canonical")]).await;
    let mut failures = Vec::new();
    let mut serial = 0;
    for case in valid_cases() {
        let inputs = std::iter::once(("canonical", &case.canonical_extjson))
            .chain(case.degenerate_extjson.as_ref().map(|d| ("degenerate", d)));
        for (kind, input) in inputs {
            serial += 1;
            let outcome = store(&server, serial, input).await.and_then(|data| {
                let hex = to_bson_hex(&data)?;
                if case.lossy || hex.eq_ignore_ascii_case(&case.canonical_bson) {
                    Ok(())
                } else {
                    Err(format!("stored {hex}, expected {}", case.canonical_bson))
                }
            });
            if let Err(problem) = outcome {
                failures.push(format!("{} ({kind}): {problem}", case.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    server.stop().await;
}

/// Relaxed Extended JSON may turn Int64 into Int32 (and back) when read: compare
/// integers by value, everything else exactly.
fn widen_integers(value: Bson) -> Bson {
    match value {
        Bson::Int32(number) => Bson::Int64(i64::from(number)),
        Bson::Document(document) => Bson::Document(
            document
                .into_iter()
                .map(|(k, v)| (k, widen_integers(v)))
                .collect(),
        ),
        Bson::Array(items) => Bson::Array(items.into_iter().map(widen_integers).collect()),
        other => other,
    }
}

fn relaxed_bson_hex(data: &Value) -> Result<String, String> {
    let bson = Bson::try_from(data.clone()).map_err(|e| format!("unreadable: {e}"))?;
    match widen_integers(bson) {
        Bson::Document(document) => document
            .to_vec()
            .map(hex::encode_upper)
            .map_err(|e| format!("cannot encode: {e}")),
        other => Err(format!("not a document: {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_records_follow_the_relaxed_spec() {
    let server = TestServer::start(&[]).await;
    let mut failures = Vec::new();
    let mut checked_text = 0;
    for (serial, case) in (1..).zip(valid_cases()) {
        let outcome = store(&server, serial, &case.canonical_extjson)
            .await
            .and_then(|data| {
                // Where the corpus gives the relaxed form, ours is exactly that form.
                if let (Some(text), false) = (&case.relaxed_extjson, case.lossy) {
                    let expected: Value = serde_json::from_str(text).expect("corpus JSON");
                    if !same_json(&data, &expected) {
                        return Err(format!("stored {data}, expected {expected}"));
                    }
                    checked_text += 1;
                }
                // Always: reading it back gives the original values (integers may change
                // width, as the relaxed spec allows; nothing else may change).
                let canonical: Value = serde_json::from_str(&case.canonical_extjson).expect("JSON");
                let (ours, original) = (relaxed_bson_hex(&data)?, relaxed_bson_hex(&canonical)?);
                if !case.lossy && ours != original {
                    return Err(format!("reads back as {ours}, original is {original}"));
                }
                Ok(())
            });
        if let Err(problem) = outcome {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked_text >= 20,
        "only {checked_text} cases had a relaxed form to compare"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_mode_keeps_every_type_too() {
    // The same corpus through the host's invocation envelope, as one batch per file.
    let server = TestServer::start(&[("RECORD_ENCODING", "canonical")]).await;
    let mut serial = 100_000;
    for (file, corpus) in corpus_files() {
        let cases: Vec<&Value> = corpus["valid"].as_array().into_iter().flatten().collect();
        if cases.is_empty() {
            continue;
        }
        let mut events = Vec::new();
        for case in &cases {
            serial += 1;
            let document = case["canonical_extjson"]
                .as_str()
                .expect("canonical_extjson");
            events.push(insert_event(&format!("82{serial:08X}"), serial, document));
        }
        let (host_status, answer) = server
            .invoke("application/json", &format!("[{}]", events.join(",")))
            .await;
        assert_eq!(
            (host_status, answer.status),
            (200, 200),
            "{file}: {}",
            answer.body
        );
        // Match written paths to events by clusterTime (skipped events have no path).
        let mut by_time: Vec<(u32, Value)> = answer
            .written()
            .iter()
            .map(|path| {
                let record = server.record(path);
                let time = record["clusterTime"]["$timestamp"]["t"]
                    .as_u64()
                    .unwrap_or(0) as u32;
                (time, record["data"].clone())
            })
            .collect();
        by_time.sort_by_key(|(time, _)| *time);
        assert_eq!(by_time.len(), cases.len(), "{file}");
        for ((_, data), case) in by_time.iter().zip(&cases) {
            if case["lossy"].as_bool().unwrap_or(false) {
                continue;
            }
            let expected = case["canonical_bson"].as_str().expect("canonical_bson");
            let stored = to_bson_hex(data).expect("document");
            assert!(
                stored.eq_ignore_ascii_case(expected),
                "{file}: {}: stored {stored}, expected {expected}",
                case["description"]
            );
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_errors_are_refused_and_write_nothing() {
    let server = TestServer::start(&[]).await;
    let mut accepted = Vec::new();
    let mut serial = 0;
    for (file, corpus) in corpus_files() {
        let decimal = corpus["bson_type"] == "0x13";
        for case in corpus["parseErrors"].as_array().into_iter().flatten() {
            serial += 1;
            let input = case["string"].as_str().expect("string");
            let document = if decimal {
                serde_json::json!({"d": {"$numberDecimal": input}}).to_string()
            } else {
                input.to_owned()
            };
            let event = insert_event(&format!("82E{serial:07X}"), serial, &document);
            let answer = server.post_json(&event).await;
            if answer.status != 400 {
                accepted.push(format!(
                    "{file}: {} -> {} {}",
                    case["description"], answer.status, answer.body
                ));
            } else {
                assert!(answer.body["error"].is_string() && answer.body["detail"].is_string());
            }
        }
    }
    assert!(serial > 150, "only {serial} parse-error cases");
    assert!(
        accepted.is_empty(),
        "accepted invalid input:\n{}",
        accepted.join("\n")
    );
    assert!(server.files().is_empty(), "nothing may be written");
    server.stop().await;
}

#[test]
fn the_corpus_document_is_what_bson_decodes() {
    // Guards the test itself: canonical_bson decodes to a document for every valid case.
    for case in valid_cases() {
        let bytes = hex::decode(&case.canonical_bson).expect("hex");
        Document::from_reader(bytes.as_slice()).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
}
