//! The README's "Query the lake" recipes, run as they stand by a real engine (DuckDB, from
//! PyPI) over a lake the real handler wrote and compacted: the current-state view must
//! return exactly the final state of a simulated collection, from the change files, the
//! hourly JSON lines and the hourly Parquet files alike.
//!
//! The collection's history is random (seeded; `QUERY_RECIPES_SEED` replays one): inserts,
//! updates with and without `fullDocument`, replaces, deletes with and without pre-image,
//! several changes of one document inside a transaction (one `clusterTime`), `_id`s of
//! several BSON types. Some documents existed before the trigger: a snapshot taken at a
//! time S within the history (issue #12) reads every document at some moment after S, so
//! its records meet changes before and after S, of documents it saw or missed, and some
//! documents only ever arrive through it. It is delivered out of order, with redeliveries, and part of one
//! hour arrives after that hour was compacted (a late part). The expected state is
//! computed here by the documented rule, independently of the SQL, in both record
//! encodings. The PySpark recipe runs the same way in Spark's local mode.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Map, Value};
use support::handler::Handler;
use support::recipes::{self, duckdb, duckdb_source, pointed_at, readme_block, run_python};
use support::rng::Rng;

/// 2024-06-16T09:00:00Z: the history spans this hour and the next few.
const START: u32 = 1_718_528_400;
/// The hour the README's one-hour query reads (2024-06-16, hour 10).
const README_HOUR: u32 = START + 3600;
const DB: &str = "sample_mflix";
const COLL: &str = "movies";
/// `COMPACT_FORMAT` for the lake the recipes read.
const FORMATS: &str = "jsonl,parquet";

// ---------------------------------------------------------------------------------------
// The simulated collection

/// A value in both encodings: canonical (what Atlas sends) and relaxed (what the lake
/// holds by default).
#[derive(Clone)]
struct Both {
    canonical: Value,
    relaxed: Value,
}

impl Both {
    fn same(value: Value) -> Both {
        Both {
            canonical: value.clone(),
            relaxed: value,
        }
    }

    fn int32(n: i32) -> Both {
        Both {
            canonical: json!({"$numberInt": n.to_string()}),
            relaxed: json!(n),
        }
    }

    fn int64(n: i64) -> Both {
        Both {
            canonical: json!({"$numberLong": n.to_string()}),
            relaxed: json!(n),
        }
    }

    /// A double with a fraction (relaxed output keeps it as is).
    fn double(half: i32) -> Both {
        let value = f64::from(half) + 0.5;
        Both {
            canonical: json!({"$numberDouble": value.to_string()}),
            relaxed: json!(value),
        }
    }

    fn document(fields: Vec<(&str, Both)>) -> Both {
        let mut canonical = Map::new();
        let mut relaxed = Map::new();
        for (name, value) in fields {
            canonical.insert(name.to_owned(), value.canonical);
            relaxed.insert(name.to_owned(), value.relaxed);
        }
        Both {
            canonical: Value::Object(canonical),
            relaxed: Value::Object(relaxed),
        }
    }

    fn array(items: Vec<Both>) -> Both {
        let (canonical, relaxed) = items.into_iter().map(|b| (b.canonical, b.relaxed)).unzip();
        Both {
            canonical: Value::Array(canonical),
            relaxed: Value::Array(relaxed),
        }
    }
}

/// The `_id` of the n-th document: ObjectId, string, Int32, Int64 (past 2^53), UUID and
/// compound, in turn.
fn document_id(n: u32) -> Both {
    match n % 6 {
        0 => Both::same(json!({"$oid": format!("665e{n:020x}")})),
        1 => Both::same(json!(format!("movie/{n} é"))),
        2 => Both::int32(1000 + n as i32),
        3 => Both::int64(9_007_199_254_740_993 + i64::from(n)),
        4 => Both::same(json!({"$binary": {
            "base64": base64_of(&uuid_bytes(n)), "subType": "04"}})),
        _ => Both::document(vec![
            ("region", Both::same(json!("eu"))),
            ("n", Both::int32(n as i32)),
        ]),
    }
}

fn uuid_bytes(n: u32) -> [u8; 16] {
    let mut bytes = *b"\x6b\x3f\x8a\x2c\x91\xd4\x4e\x0f\xa7\xc2\x5b\x9e\x13\xd0\x8f\x41";
    bytes[12..].copy_from_slice(&n.to_be_bytes());
    bytes
}

fn base64_of(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A document version: `_id` first, then a random choice of fields in a random order
/// (field order must survive every engine).
fn document(rng: &mut Rng, id: &Both, version: i32) -> Both {
    let mut fields: Vec<(&str, Both)> = vec![
        ("title", Both::same(json!(format!("Film n°{version}")))),
        ("version", Both::int32(version)),
        ("views", Both::int64((1 << 40) + i64::from(version))),
        ("rating", Both::double(version % 10)),
        (
            "tags",
            Both::array(vec![Both::same(json!("a")), Both::int32(version)]),
        ),
        (
            "meta",
            Both::document(vec![
                ("ok", Both::same(json!(version % 2 == 0))),
                ("none", Both::same(Value::Null)),
            ]),
        ),
    ];
    for i in (1..fields.len()).rev() {
        fields.swap(i, rng.below(i as u64 + 1) as usize);
    }
    fields.truncate(2 + rng.below(5) as usize);
    fields.insert(0, ("_id", id.clone()));
    Both::document(fields)
}

/// One change event as Atlas sends it (canonical Extended JSON).
struct Change {
    time: u32,
    operation: &'static str,
    event: Value,
}

/// The history of the collection and its final state by the documented rule.
struct History {
    changes: Vec<Change>,
    /// The documents that exist at the end: `_id` number, eventId and document of the
    /// record that set the state.
    survivors: Vec<(u32, String, Both)>,
}

/// `RECORD_ENCODING`: which form of a [`Both`] the lake holds.
#[derive(Clone, Copy, Debug)]
enum Encoding {
    Relaxed,
    Canonical,
}

impl Encoding {
    fn setting(self) -> &'static str {
        match self {
            Encoding::Relaxed => "relaxed",
            Encoding::Canonical => "canonical",
        }
    }

    fn pick(self, value: &Both) -> &Value {
        match self {
            Encoding::Relaxed => &value.relaxed,
            Encoding::Canonical => &value.canonical,
        }
    }
}

/// A compact, order-keeping text of a JSON value: how rows are compared.
fn text(value: &Value) -> String {
    serde_json::to_string(value).expect("JSON")
}

/// The snapshot's records sort before every change at or after S: compared by this prefix.
fn snapshot_prefix((t, i): (u32, u32)) -> String {
    format!("82{t:08X}{i:08X}00")
}

/// An `eventId` of a snapshot record cut to its prefix (the rest is a hash of the key,
/// tested in the handler's own tests), so states compare with [`snapshot_prefix`].
fn without_key_hash(event_id: &str) -> &str {
    match event_id.get(18..20) {
        Some("00") if event_id.len() == 52 => &event_id[..20],
        _ => event_id,
    }
}

/// Documents that exist before the trigger starts: ids `0..CHANGED_BEFORE` are changed
/// later too, `DOCUMENTS..DOCUMENTS + NEVER_CHANGED` only ever arrive through the snapshot.
const CHANGED_BEFORE: u32 = 8;
const NEVER_CHANGED: u32 = 4;

impl History {
    /// A snapshot event for document `n` whose current state is `doc`, taken at `s`; it
    /// sets the known state unless a change at or after S already did.
    fn read_for_snapshot(
        n: u32,
        state: &mut Option<(String, Both)>,
        s: (u32, u32),
        changes: &mut Vec<Change>,
    ) {
        let Some((event_id, doc)) = state else {
            return; // deleted (or never inserted) when read: the snapshot does not see it
        };
        changes.push(Change {
            time: s.0,
            operation: "snapshot",
            event: json!({
                "operationType": "snapshot",
                "ns": {"db": DB, "coll": COLL},
                "documentKey": {"_id": document_id(n).canonical},
                "fullDocument": doc.canonical.clone(),
                "snapshotTime": {"$timestamp": {"t": s.0, "i": s.1}},
            }),
        });
        let prefix = snapshot_prefix(s);
        if *event_id < prefix {
            *event_id = prefix;
        }
    }

    fn generate(rng: &mut Rng, events: usize) -> History {
        const DOCUMENTS: u32 = 24;
        let mut changes = Vec::new();
        // Per document: the state the lake can know (documented rule) and its version.
        let mut known: BTreeMap<u32, Option<(String, Both)>> = BTreeMap::new();
        let mut version = 0;
        for n in (0..CHANGED_BEFORE).chain(DOCUMENTS..DOCUMENTS + NEVER_CHANGED) {
            version += 1;
            // No change event made it: an empty eventId sorts before every record.
            known.insert(
                n,
                Some((String::new(), document(rng, &document_id(n), version))),
            );
        }
        // The snapshot: its time S (the next change's clusterTime: a change at exactly S
        // must win), and the documents it has yet to read.
        let mut snapshot: Option<(u32, u32)> = None;
        let mut unread: Vec<u32> = (0..DOCUMENTS + NEVER_CHANGED).collect();
        let (mut t, mut i) = (START, 1u32);
        let mut txn_number = 0i64;
        while changes.len() < events {
            if snapshot.is_none() && changes.len() >= events / 3 {
                snapshot = Some((t, i));
            }
            if let Some(s) = snapshot {
                for _ in 0..rng.below(3) {
                    if let Some(n) = unread.pop() {
                        let state = known.entry(n).or_insert(None);
                        History::read_for_snapshot(n, state, s, &mut changes);
                    }
                }
            }
            // A transaction: 2-4 changes sharing one clusterTime, often of one document.
            let in_txn = rng.chance(15);
            let ops = if in_txn { 2 + rng.below(3) } else { 1 };
            if in_txn {
                txn_number += 1;
            }
            let mut n = rng.below(u64::from(DOCUMENTS)) as u32;
            for op_index in 0..ops {
                if op_index > 0 && !rng.chance(60) {
                    n = rng.below(u64::from(DOCUMENTS)) as u32;
                }
                version += 1;
                let id = document_id(n);
                let event_id = format!(
                    "82{t:08X}{i:08X}2B022C{op_index:04X}296E5A10046B3F8A2C91D44E0FA7C25B9E13D08F4146645F69640004"
                );
                let mut event = json!({
                    "_id": {"_data": event_id},
                    "operationType": "",
                    "clusterTime": {"$timestamp": {"t": t, "i": i}},
                    "wallTime": {"$date": {"$numberLong": (u64::from(t) * 1000 + 7).to_string()}},
                    "ns": {"db": DB, "coll": COLL},
                    "documentKey": {"_id": id.canonical},
                });
                if in_txn {
                    event["txnNumber"] = json!({"$numberLong": txn_number.to_string()});
                    event["lsid"] = json!({"id": {"$binary": {"base64": base64_of(&uuid_bytes(9)), "subType": "04"}}});
                }
                let state = known.entry(n).or_insert(None);
                let operation = match state.clone() {
                    None => {
                        let doc = document(rng, &id, version);
                        event["fullDocument"] = doc.canonical.clone();
                        *state = Some((event_id.clone(), doc));
                        "insert"
                    }
                    Some((_, before)) => match rng.below(100) {
                        0..=34 => {
                            let doc = document(rng, &id, version);
                            event["updateDescription"] = json!({
                                "updatedFields": {"version": {"$numberInt": version.to_string()}},
                                "removedFields": [], "truncatedArrays": []});
                            event["fullDocument"] = doc.canonical.clone();
                            *state = Some((event_id.clone(), doc));
                            "update"
                        }
                        35..=54 => {
                            // No state: "Full Document" off, or the lookup found nothing.
                            event["updateDescription"] = json!({
                                "updatedFields": {"version": {"$numberInt": version.to_string()}},
                                "removedFields": ["rating"], "truncatedArrays": []});
                            if rng.chance(50) {
                                event["fullDocument"] = Value::Null;
                            }
                            "update"
                        }
                        55..=69 => {
                            let doc = document(rng, &id, version);
                            event["fullDocument"] = doc.canonical.clone();
                            *state = Some((event_id.clone(), doc));
                            "replace"
                        }
                        _ => {
                            if rng.chance(50) {
                                event["fullDocumentBeforeChange"] = before.canonical;
                            }
                            *state = None;
                            "delete"
                        }
                    },
                };
                event["operationType"] = json!(operation);
                changes.push(Change {
                    time: t,
                    operation,
                    event,
                });
            }
            let step = rng.below(90);
            (t, i) = if step == 0 {
                (t, i + 1)
            } else {
                (t + step as u32, 1)
            };
        }
        if let Some(s) = snapshot {
            for n in unread {
                let state = known.entry(n).or_insert(None);
                History::read_for_snapshot(n, state, s, &mut changes);
            }
        }
        let survivors = known
            .into_iter()
            .filter_map(|(n, state)| state.map(|(event_id, doc)| (n, event_id, doc)))
            .collect();
        History { changes, survivors }
    }

    /// The final state as the lake writes it: `documentKey` text -> (eventId, document
    /// text).
    fn expected(&self, encoding: Encoding) -> BTreeMap<String, (String, String)> {
        self.survivors
            .iter()
            .map(|(n, event_id, doc)| {
                let key = json!({"_id": encoding.pick(&document_id(*n))});
                (text(&key), (event_id.clone(), text(encoding.pick(doc))))
            })
            .collect()
    }

    /// Changes per operation type in one hour (the README's one-hour query).
    fn counts_in_hour(&self, hour_start: u32) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for change in &self.changes {
            if (hour_start..hour_start + 3600).contains(&change.time) {
                *counts.entry(change.operation.to_owned()).or_insert(0) += 1;
            }
        }
        counts
    }
}

// ---------------------------------------------------------------------------------------
// Delivery, compaction, the engine

/// Posts `events` in shuffled batches of 1-20, each event once more now and then (the
/// Atlas side delivers out of order and at least once).
async fn deliver(handler: &Handler, rng: &mut Rng, changes: &[&Change]) {
    let mut order: Vec<&Value> = changes.iter().map(|change| &change.event).collect();
    for _ in 0..changes.len() / 10 {
        order.push(&changes[rng.below(changes.len() as u64) as usize].event);
    }
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for batch in order.chunks(1 + rng.below(20) as usize) {
        let body = serde_json::to_string(&batch).expect("JSON");
        let response = handler.post_json(body).await;
        let status = response.status();
        let answer: Value = response.json().await.expect("JSON answer");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["skipped"], 0, "{answer}");
    }
}

/// Runs `handler compact` over every hour of the history (one pass, as an operator's
/// command does) and checks it succeeded.
fn compact(lake: &Path, last_change: u32, formats: &str) {
    // START is 2024-06-16T09:00Z.
    let last_hour = 9 + (last_change - START) / 3600;
    assert!(last_hour < 24, "the history fits in 2024-06-16");
    let output = Command::new(env!("CARGO_BIN_EXE_handler"))
        .env_clear()
        .args(["compact", "--from", "2024-06-16T09", "--to"])
        .arg(format!("2024-06-16T{last_hour:02}"))
        .env("LOCAL_LAKE_DIR", lake)
        .env("LOCAL_LAKE_FSYNC", "false")
        .env("COMPACT_FORMAT", formats)
        .output()
        .expect("handler compact runs");
    assert!(
        output.status.success(),
        "handler compact failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("a JSON summary");
    assert!(summary["partsWritten"].is_u64(), "{summary}");
}

// ---------------------------------------------------------------------------------------
// The README's blocks

/// Engine rows (`documentKey`, `eventId`, `data`) as a state: relaxed `documentKey`
/// text -> (eventId, document text), both compacted and order-keeping.
fn state_of(rows: Vec<Value>) -> BTreeMap<String, (String, String)> {
    let mut state = BTreeMap::new();
    for row in rows {
        let parse = |name: &str| -> Value {
            serde_json::from_str(row[name].as_str().expect("text")).expect("JSON text")
        };
        let key = text(&parse("documentKey"));
        let value = (
            without_key_hash(row["eventId"].as_str().expect("eventId")).to_owned(),
            text(&parse("data")),
        );
        assert!(
            state.insert(key, value).is_none(),
            "one row per document: {row}"
        );
    }
    state
}

/// The README's current-state view over the README's view of `source`, run by DuckDB.
fn duckdb_current_state(source: &str, lake: &Path) -> BTreeMap<String, (String, String)> {
    state_of(recipes::duckdb_current_rows(source, lake))
}

/// Fails, listing the documents whose state differs, unless `actual` is `expected`.
fn assert_state(
    source: &str,
    seed: u64,
    expected: &BTreeMap<String, (String, String)>,
    actual: &BTreeMap<String, (String, String)>,
) {
    let wrong = recipes::differences(expected, actual);
    assert!(
        wrong.is_empty(),
        "{source}: {} of {} documents wrong (QUERY_RECIPES_SEED={seed}):\n{}",
        wrong.len(),
        expected.len(),
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The tests

/// A lake the real handler wrote from a random history, compacted twice (part of the
/// README's hour arrives in between: a late part), with some events redelivered after.
async fn written_lake(encoding: Encoding) -> (tempfile::TempDir, History, u64) {
    let seed = std::env::var("QUERY_RECIPES_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
    eprintln!("QUERY_RECIPES_SEED={seed}");
    let mut rng = Rng(seed);
    let history = History::generate(&mut rng, 400);
    assert!(history.survivors.len() > 3, "a few documents survive");

    let lake = tempfile::tempdir().expect("lake");
    let handler = Handler::start(
        lake.path(),
        &[
            ("LOCAL_LAKE_FSYNC", "false"),
            ("RECORD_ENCODING", encoding.setting()),
        ],
    );
    let (late, on_time): (Vec<&Change>, Vec<&Change>) = history
        .changes
        .iter()
        .partition(|c| (README_HOUR..README_HOUR + 3600).contains(&c.time) && rng.chance(30));
    deliver(&handler, &mut rng, &on_time).await;
    let last_change = history
        .changes
        .iter()
        .map(|change| change.time)
        .max()
        .expect("changes");
    compact(lake.path(), last_change, FORMATS);
    deliver(&handler, &mut rng, &late).await;
    deliver(&handler, &mut rng, &on_time[..on_time.len() / 5]).await;
    compact(lake.path(), last_change, FORMATS);
    let hourly = lake.path().join("mongodb/changes-hourly");
    assert!(
        hourly.join("_compact").is_dir(),
        "the recipes' globs pass by the hidden state"
    );
    let hour = hourly
        .join(DB)
        .join(COLL)
        .join("year=2024/month=06/day=16/hour=10");
    for late_part in ["events-20240616-10-2.jsonl", "events-20240616-10-2.parquet"] {
        assert_eq!(
            hour.join(late_part).is_file(),
            !late.is_empty(),
            "{late_part}"
        );
    }
    (lake, history, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_runs_the_readme_recipes_to_the_collections_final_state() {
    for encoding in [Encoding::Canonical, Encoding::Relaxed] {
        let (lake, history, seed) = written_lake(encoding).await;
        for source in [
            "change-files",
            "changes-hourly-jsonl",
            "changes-hourly-parquet",
        ] {
            let actual = duckdb_current_state(source, lake.path());
            let what = format!("{source}, {encoding:?}");
            assert_state(&what, seed, &history.expected(encoding), &actual);
        }
        if let Encoding::Relaxed = encoding {
            assert_eq!(
                one_hour(lake.path()),
                history.counts_in_hour(README_HOUR),
                "seed {seed}"
            );
        }
    }
}

/// The README's one-hour query: changes per operation type.
fn one_hour(lake: &Path) -> BTreeMap<String, u64> {
    duckdb(&format!(
        "{}\n{}",
        duckdb_source("changes-hourly-jsonl", lake),
        readme_block("duckdb: one-hour")
    ))
    .into_iter()
    .map(|row| {
        (
            row["operationType"].as_str().expect("type").to_owned(),
            row["changes"].as_u64().expect("count"),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyspark_runs_the_readme_recipe_to_the_collections_final_state() {
    let java = Command::new("java").arg("-version").output();
    assert!(
        java.is_ok_and(|output| output.status.success()),
        "java does not run: the PySpark recipe needs Java 17 or newer (Debian: apt-get install \
         openjdk-17-jre-headless); this test never skips"
    );
    let (lake, history, seed) = written_lake(Encoding::Relaxed).await;
    let cell = pointed_at(
        &readme_block("pyspark: current-state"),
        "abfss://mongodb@<account>.dfs.core.windows.net/",
        &format!("{}/mongodb/", lake.path().display()),
    );
    let actual = state_of(run_python("query_spark.py", &cell));
    assert_state(
        "PySpark, hourly JSON lines",
        seed,
        &history.expected(Encoding::Relaxed),
        &actual,
    );
}
