//! A compacted part's Parquet file, read back by pyarrow (an implementation independent
//! of the writer's): the schema the README gives (names, types, nullability, order),
//! zstd on every column, and one row per record line with the line's values, in the
//! order the lines were pushed. The lines are real: events posted to the handler over
//! HTTP and read back from the lake, in both record encodings.

use mongo_lake_ingest::compact::parquet::ParquetPartWriter;
use serde_json::{json, Value};

mod support;

use support::python;
use support::TestServer;

/// One change as posted, and what its row must hold.
struct Change {
    token: &'static str,
    operation: &'static str,
    time: u32,
    increment: u32,
    wall_ms: Option<i64>,
    txn: Option<i64>,
    /// More fields of the event (documents).
    more: Value,
}

/// `shop ü.or"ders/../x`: names the lake must encode in paths, and the record keeps.
const DB: &str = "shop ü";
const COLL: &str = "or\"ders/../x\\y";

fn changes() -> Vec<Change> {
    let id = json!({"$oid": "573a1390f29313caabcd42e8"});
    let full = json!({
        "_id": id, "title": "Blade Runner ✨", "year": {"$numberInt": "1982"},
        "price": {"$numberDecimal": "9.90"}, "ratio": {"$numberDouble": "0.5"},
        "released": {"$date": {"$numberLong": "-1000"}}, "tags": ["a", {"b": null}]
    });
    let update = json!({"updatedFields": {"year": {"$numberInt": "1983"}}, "removedFields": ["tags"], "truncatedArrays": []});
    let change = |token, operation, time, increment, wall_ms, txn, more| Change {
        token,
        operation,
        time,
        increment,
        wall_ms,
        txn,
        more,
    };
    vec![
        // Posted out of order: the part holds them in `eventId` order.
        change(
            "8266000005",
            "delete",
            1_718_532_005,
            1,
            Some(253_402_300_800_123),
            None,
            json!({"fullDocumentBeforeChange": full}),
        ),
        change(
            "8266000001",
            "insert",
            1_718_532_000,
            7,
            Some(1_718_532_000_123),
            None,
            json!({"fullDocument": full}),
        ),
        // One transaction: the same clusterTime and txnNumber, two events.
        change(
            "8266000002",
            "update",
            1_718_532_001,
            2,
            Some(1_718_532_001_000),
            Some(42),
            json!({"updateDescription": update}),
        ),
        change(
            "8266000003",
            "update",
            1_718_532_001,
            2,
            Some(1_718_532_001_000),
            Some(42),
            json!({"updateDescription": update, "fullDocument": full}),
        ),
        change(
            "8266000004",
            "replace",
            1_718_532_004,
            1,
            Some(-86_400_001),
            Some(i64::MAX),
            json!({"fullDocument": full}),
        ),
        change(
            "8266000006",
            "delete",
            1_718_532_006,
            9,
            None,
            None,
            json!({}),
        ),
    ]
}

/// The change event Atlas sends (canonical Extended JSON).
fn event(change: &Change) -> Value {
    let mut event = json!({
        "_id": {"_data": change.token},
        "operationType": change.operation,
        "clusterTime": {"$timestamp": {"t": change.time, "i": change.increment}},
        "ns": {"db": DB, "coll": COLL},
        "documentKey": {"_id": {"$oid": "573a1390f29313caabcd42e8"}},
    });
    if let Some(ms) = change.wall_ms {
        event["wallTime"] = json!({"$date": {"$numberLong": ms.to_string()}});
    }
    if let Some(txn) = change.txn {
        event["txnNumber"] = json!({"$numberLong": txn.to_string()});
    }
    for (key, value) in change.more.as_object().expect("an object") {
        event[key] = value.clone();
    }
    event
}

/// The record lines the handler wrote for `changes`, in `eventId` order (as compaction
/// sorts them).
async fn record_lines(encoding: &str, changes: &[Change]) -> Vec<Vec<u8>> {
    let server = TestServer::start(&[("RECORD_ENCODING", encoding)]).await;
    let batch: Vec<Value> = changes.iter().map(event).collect();
    let answer = server.post_json(&Value::Array(batch).to_string()).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let mut lines: Vec<Vec<u8>> = server.files().into_values().collect();
    server.stop().await;
    assert_eq!(lines.len(), changes.len());
    lines.sort_by_key(|line| parsed(line)["eventId"].as_str().map(str::to_owned));
    lines
}

fn parsed(line: &[u8]) -> Value {
    serde_json::from_slice(line).expect("a record is JSON")
}

/// The part written from `lines`, read by pyarrow.
fn write_and_read(lines: &[Vec<u8>]) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events-20240616-10.parquet");
    let file = std::fs::File::create(&path).expect("part file");
    let mut writer = ParquetPartWriter::create(file).expect("writer");
    for line in lines {
        writer.push(line).expect("a valid record");
    }
    assert_eq!(writer.finish().expect("footer"), lines.len() as u64);
    let out = python::run_script(&python::script("read_parquet_part.py"), &[&path]);
    serde_json::from_str(&out).expect("the script prints JSON")
}

#[tokio::test]
async fn pyarrow_reads_the_schema_codec_and_rows_of_a_part() {
    let changes = {
        let mut changes = changes();
        changes.sort_by_key(|change| change.token);
        changes
    };
    for encoding in ["relaxed", "canonical"] {
        let lines = record_lines(encoding, &changes).await;
        let part = write_and_read(&lines);

        let utc_ms = "timestamp[ms, tz=UTC]";
        let expected_schema = [
            ("eventId", "string", false),
            ("operationType", "string", false),
            ("dataSource", "string", false),
            ("db", "string", false),
            ("coll", "string", false),
            ("clusterTime", utc_ms, false),
            ("clusterTimeIncrement", "int64", false),
            ("wallTime", utc_ms, true),
            ("txnNumber", "int64", true),
            ("documentKey", "string", false),
            ("updateDescription", "string", true),
            ("data", "string", false),
        ];
        let schema: Vec<(String, String, bool)> = part["arrowSchema"]
            .as_array()
            .expect("schema")
            .iter()
            .map(|field| {
                (
                    field["name"].as_str().expect("name").to_owned(),
                    field["type"].as_str().expect("type").to_owned(),
                    field["nullable"].as_bool().expect("nullable"),
                )
            })
            .collect();
        let expected: Vec<(String, String, bool)> = expected_schema
            .iter()
            .map(|(name, kind, nullable)| (name.to_string(), kind.to_string(), *nullable))
            .collect();
        assert_eq!(schema, expected, "{encoding}");
        // What readers without the embedded Arrow schema see (Synapse, DuckDB, Spark).
        let columns = part["parquetColumns"].as_array().expect("columns");
        assert_eq!(columns.len(), expected_schema.len());
        for column in columns {
            let name = column["name"].as_str().expect("name");
            let (_, kind, nullable) = expected_schema
                .iter()
                .find(|(expected, _, _)| *expected == name)
                .expect("a schema column");
            assert_eq!(column["optional"], json!(nullable), "{name}");
            let logical = column["logical"].as_str().expect("logical type");
            match *kind {
                "string" => assert_eq!(logical, "String", "{name}"),
                "int64" => assert_eq!(column["physical"], "INT64", "{name}"),
                _ => assert!(
                    logical.contains("isAdjustedToUTC=true")
                        && logical.contains("timeUnit=milliseconds"),
                    "{name}: {logical}"
                ),
            }
        }
        assert_eq!(part["codecs"], json!(["ZSTD"]), "{encoding}");
        assert_eq!(part["numRows"], json!(changes.len()));

        let rows = part["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), changes.len());
        for ((row, line), change) in rows.iter().zip(&lines).zip(&changes) {
            let record = parsed(line);
            let text = std::str::from_utf8(line).expect("UTF-8");
            assert_eq!(
                row["eventId"], change.token,
                "{encoding}: rows in push order"
            );
            assert_eq!(row["operationType"], change.operation);
            assert_eq!(row["dataSource"], record["dataSource"]);
            assert_eq!(row["db"], DB);
            assert_eq!(row["coll"], COLL);
            assert_eq!(row["clusterTime"], json!(i64::from(change.time) * 1000));
            assert_eq!(row["clusterTimeIncrement"], json!(change.increment));
            assert_eq!(row["wallTime"], json!(change.wall_ms), "{encoding}");
            assert_eq!(row["txnNumber"], json!(change.txn), "{encoding}");
            for document in ["documentKey", "updateDescription", "data"] {
                match row[document].as_str() {
                    None => assert!(record.get(document).is_none(), "{document} is null"),
                    Some(value) => {
                        // The line's own text for the field, byte for byte.
                        let field = format!("{}:{value}", json!(document));
                        assert!(text.contains(&field), "{encoding} {document}: {value}");
                        let value: Value = serde_json::from_str(value).expect("JSON text");
                        assert_eq!(value, record[document]);
                    }
                }
            }
        }
    }
}
