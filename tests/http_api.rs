//! The HTTP contract, over real loopback HTTP against a real server writing real files:
//! both custom-handler modes, the samples, selection, idempotency, and every error answer.

mod support;

use bson::Bson;
use serde_json::{json, Value};
use support::{insert_event, sample, TestServer};

const SAMPLES: [(&str, &str, &str); 6] = [
    ("insert.json", "insert", "fullDocument"),
    ("update-full-document.json", "update", "fullDocument"),
    ("update-no-full-document.json", "update", "documentKey"),
    ("replace.json", "replace", "fullDocument"),
    (
        "delete-with-preimage.json",
        "delete",
        "fullDocumentBeforeChange",
    ),
    ("delete-no-preimage.json", "delete", "documentKey"),
];

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).expect("JSON")
}

/// The event's field read as BSON, for comparison with what the lake holds.
fn as_bson(value: &Value) -> Bson {
    Bson::try_from(value.clone()).expect("Extended JSON")
}

#[tokio::test]
async fn readiness_ping_is_answered() {
    let server = TestServer::start(&[]).await;
    let response = server
        .client
        .get(server.url("/"))
        .send()
        .await
        .expect("ping");
    assert_eq!(response.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn every_sample_is_stored_with_the_right_document() {
    let server = TestServer::start(&[("RECORD_ENCODING", "canonical")]).await;
    for (file, operation, source) in SAMPLES {
        let event = parsed(&sample(file));
        let answer = server.post_json(&sample(file)).await;
        assert_eq!(answer.status, 200, "{file}: {}", answer.body);
        assert_eq!(answer.body["written"], 1, "{file}");
        let path = &answer.written()[0];
        assert!(
            path.starts_with("changes/sample_mflix/movies/year="),
            "{file}: {path}"
        );
        let record = server.record(path);
        assert_eq!(record["operationType"], operation, "{file}");
        assert_eq!(record["dataSource"], source, "{file}");
        assert_eq!(record["eventId"], event["_id"]["_data"], "{file}");
        assert_eq!(
            record["ns"],
            json!({"db": "sample_mflix", "coll": "movies"})
        );
        assert_eq!(
            as_bson(&record["documentKey"]),
            as_bson(&event["documentKey"])
        );
        assert_eq!(
            as_bson(&record["clusterTime"]),
            as_bson(&event["clusterTime"])
        );
        assert_eq!(as_bson(&record["wallTime"]), as_bson(&event["wallTime"]));
        assert_eq!(
            as_bson(&record["data"]),
            as_bson(&event[source]),
            "{file}: the selected document, exactly"
        );
        if event.get("updateDescription").is_some() {
            assert_eq!(
                as_bson(&record["updateDescription"]),
                as_bson(&event["updateDescription"])
            );
        }
    }
    assert_eq!(server.files().len(), SAMPLES.len());
    server.stop().await;
}

#[tokio::test]
async fn relaxed_records_are_friendly_json() {
    let server = TestServer::start(&[]).await;
    let answer = server.post_json(&sample("insert.json")).await;
    let record = server.record(&answer.written()[0]);
    let data = &record["data"];
    assert!(
        data["runtime"].is_i64(),
        "numbers are plain JSON numbers: {data}"
    );
    assert!(data["imdb"]["rating"].is_f64());
    assert!(data["_id"]["$oid"].is_string());
    assert!(
        record["wallTime"]["$date"].is_string(),
        "dates are ISO-8601"
    );
    server.stop().await;
}

#[tokio::test]
async fn non_data_events_are_acknowledged_and_skipped() {
    let server = TestServer::start(&[]).await;
    let answer = server.post_json(&sample("drop.json")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        (
            answer.body["events"].clone(),
            answer.body["skipped"].clone(),
            answer.body["written"].clone()
        ),
        (json!(1), json!(1), json!(0))
    );
    assert!(server.files().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_redelivered_event_leaves_one_identical_file() {
    let server = TestServer::start(&[]).await;
    let first = server.post_json(&sample("insert.json")).await;
    let before = server.files();
    let second = server.post_json(&sample("insert.json")).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body["written"], 0);
    assert_eq!(second.already_present(), first.written());
    assert_eq!(server.files(), before, "same single file, same bytes");
    server.stop().await;
}

#[tokio::test]
async fn batches_write_one_file_per_event_in_both_framings() {
    let json_server = TestServer::start(&[]).await;
    let answer = json_server.post_json(&sample("batch.json")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["events"], 5);
    assert_eq!(answer.body["written"], 5);

    let ndjson_server = TestServer::start(&[]).await;
    let answer = ndjson_server
        .post("application/x-ndjson", sample("batch.ndjson"))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["written"], 5);

    // Two events of one transaction share a clusterTime but not a file.
    assert_eq!(json_server.files().len(), 5);
    assert_eq!(
        json_server.files(),
        ndjson_server.files(),
        "same paths, same bytes"
    );

    // Retrying the whole batch is safe.
    let retry = json_server.post_json(&sample("batch.json")).await;
    assert_eq!(
        (
            retry.body["written"].clone(),
            retry.body["alreadyPresent"].clone()
        ),
        (json!(0), json!(5))
    );
    json_server.stop().await;
    ndjson_server.stop().await;
}

#[tokio::test]
async fn payload_mode_speaks_the_invocation_envelope() {
    let server = TestServer::start(&[]).await;
    let (host_status, answer) = server
        .invoke("application/json", &sample("batch.json"))
        .await;
    assert_eq!(host_status, 200);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["written"], 5);
    assert_eq!(server.files().len(), 5);

    // Errors travel inside Outputs.res; the host still gets 200.
    let (host_status, answer) = server.invoke("application/json", "{not json").await;
    assert_eq!((host_status, answer.status), (200, 400));
    assert_eq!(answer.body["error"], "malformed_json");

    let (_, answer) = server.invoke("text/plain", &sample("insert.json")).await;
    assert_eq!(answer.status, 415);

    // A body that is not an invocation at all.
    let response = server
        .client
        .post(server.url("/ingest"))
        .header("Content-Type", "application/json")
        .body(sample("insert.json"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let outer: Value = response.json().await.expect("envelope");
    assert_eq!(outer["Outputs"]["res"]["statusCode"], 400);
    assert!(outer["Outputs"]["res"]["body"]
        .as_str()
        .is_some_and(|b| b.contains("bad_envelope")));
    server.stop().await;
}

#[tokio::test]
async fn payload_mode_and_forwarding_write_the_same_file() {
    let forwarded = TestServer::start(&[]).await;
    let invoked = TestServer::start(&[]).await;
    forwarded.post_json(&sample("replace.json")).await;
    invoked
        .invoke("application/json", &sample("replace.json"))
        .await;
    assert_eq!(forwarded.files(), invoked.files());
    assert_eq!(forwarded.files().len(), 1);
    forwarded.stop().await;
    invoked.stop().await;
}

#[tokio::test]
async fn malformed_and_invalid_bodies_get_400_naming_the_problem() {
    let server = TestServer::start(&[]).await;

    let answer = server.post_json("{\"operationType\": ").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error"], "malformed_json");
    assert!(answer.body["detail"]
        .as_str()
        .is_some_and(|d| d.contains("line 1")));

    let answer = server.post_json(r#"{"hello": "world"}"#).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error"], "invalid_event");
    assert!(answer.body["detail"]
        .as_str()
        .is_some_and(|d| d.contains("operationType")));
    assert!(
        answer.body.get("index").is_none(),
        "no index for a single event"
    );

    // In a batch, the index of the bad event, and nothing of the batch is written.
    let mut batch: Vec<Value> = serde_json::from_str(&sample("batch.json")).expect("batch");
    batch[3]
        .as_object_mut()
        .map(|event| event.remove("clusterTime"));
    let answer = server
        .post_json(&serde_json::to_string(&batch).expect("JSON"))
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["index"], 3);
    assert!(answer.body["detail"]
        .as_str()
        .is_some_and(|d| d.contains("clusterTime")));
    assert!(server.files().is_empty(), "a refused batch writes nothing");

    let ndjson = format!(
        "{}\n{{bad\n",
        sample("batch.ndjson").lines().next().unwrap_or_default()
    );
    let answer = server.post("application/x-ndjson", ndjson).await;
    assert_eq!(
        (answer.status, answer.body["index"].clone()),
        (400, json!(1))
    );

    let answer = server.post_json("[1, 2]").await;
    assert_eq!(
        (answer.status, answer.body["index"].clone()),
        (400, json!(0))
    );

    let bad_decimal = insert_event("82AA", 1, r#"{"price": {"$numberDecimal": "E01"}}"#);
    let answer = server.post_json(&bad_decimal).await;
    assert_eq!(answer.status, 400);
    assert!(answer.body["detail"]
        .as_str()
        .is_some_and(|d| d.contains("fullDocument.price")));
    assert!(server.files().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn unsupported_media_types_get_415() {
    let server = TestServer::start(&[]).await;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        let answer = server.post(content_type, sample("insert.json")).await;
        assert_eq!(answer.status, 415, "{content_type}");
        assert_eq!(answer.body["error"], "unsupported_media_type");
    }
    let response = server
        .client
        .post(server.url("/api/ingest"))
        .body(sample("insert.json"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 415, "no Content-Type at all");
    assert!(server.files().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let server = TestServer::start(&[("MAX_BODY_BYTES", "1000")]).await;
    let big = sample("insert.json");
    assert!(big.len() > 1000);
    let answer = server.post_json(&big).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.body["error"], "payload_too_large");

    // Without Content-Length (chunked), the limit still holds.
    let chunks = vec![Ok::<_, std::io::Error>(big.clone())];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let answer = server.post("application/json", body).await;
    assert_eq!(answer.status, 413);

    let (_, answer) = server.invoke("application/json", &big).await;
    assert_eq!(
        answer.status, 413,
        "the limit applies to the original body in payload mode"
    );

    let small = insert_event("82AB", 7, r#"{"_id": 1}"#);
    assert!(small.len() < 1000);
    assert_eq!(server.post_json(&small).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let server = TestServer::start(&[]).await;
    let response = server
        .client
        .get(server.url("/nope"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "not_found");
    let response = server
        .client
        .get(server.url("/api/ingest"))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 405);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "method_not_allowed");
    server.stop().await;
}

#[tokio::test]
async fn storage_failure_answers_503_then_a_retry_stores_everything() {
    let server = TestServer::start(&[]).await;
    // A file where the `changes` folder must go: every write fails.
    let blocker = server.container().join("changes");
    std::fs::write(&blocker, b"").expect("blocker");

    let answer = server.post_json(&sample("batch.json")).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["error"], "storage_unavailable");
    assert_eq!(answer.header("retry-after"), Some("5"));
    let (_, invoked) = server
        .invoke("application/json", &sample("batch.json"))
        .await;
    assert_eq!(invoked.status, 503);
    assert!(invoked.headers.get("retry-after").is_some());
    assert!(
        server.files().keys().all(|path| path == "changes"),
        "no record anywhere"
    );

    std::fs::remove_file(&blocker).expect("unblock");
    let retry = server.post_json(&sample("batch.json")).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body["written"], 5);
    server.stop().await;
}

#[tokio::test]
async fn a_batch_stored_in_part_is_completed_by_its_retry() {
    let server = TestServer::start(&[]).await;
    let events: Vec<String> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(n, coll)| {
            json!({
                "_id": {"_data": format!("82PART{n}")},
                "operationType": "insert",
                "clusterTime": {"$timestamp": {"t": 1_700_000_000, "i": n}},
                "ns": {"db": "db", "coll": coll},
                "documentKey": {"_id": n},
                "fullDocument": {"_id": n},
            })
            .to_string()
        })
        .collect();
    let batch = format!("[{}]", events.join(","));
    // Only collection `b` cannot be written: a file sits where its folder must go.
    let blocker = server.container().join("changes/db/b");
    std::fs::create_dir_all(server.container().join("changes/db")).expect("folder");
    std::fs::write(&blocker, b"").expect("blocker");

    let failed = server.post_json(&batch).await;
    assert_eq!(failed.status, 503, "{}", failed.body);
    let stored_before_retry = server.files().len();
    assert_eq!(
        stored_before_retry, 3,
        "a and c stored (plus the blocker file)"
    );

    std::fs::remove_file(&blocker).expect("unblock");
    let retry = server.post_json(&batch).await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(
        (
            retry.body["written"].clone(),
            retry.body["alreadyPresent"].clone()
        ),
        (json!(1), json!(2))
    );
    assert_eq!(server.files().len(), 3, "one file per event, nothing twice");
    server.stop().await;
}

#[tokio::test]
async fn fidelity_traps_survive_in_both_encodings() {
    let document = r#"{
        "_id": {"$numberLong": "9007199254740993"},
        "subnormal": {"$numberDouble": "5e-324"},
        "negativeZero": {"$numberDouble": "-0.0"},
        "nan": {"$numberDouble": "NaN"},
        "big": {"$numberDouble": "1.7976931348623157e308"},
        "oneThird": {"$numberDouble": "0.3333333333333333"},
        "int32": {"$numberInt": "7"},
        "int64": {"$numberLong": "7"},
        "decimal": {"$numberDecimal": "1234567890.123456789012345678901234"},
        "after9999": {"$date": {"$numberLong": "253402300800001"}},
        "before1970": {"$date": {"$numberLong": "-62135596800000"}},
        "a.b": 1, "$dollar": 2, "ключ": "значение", "z": 0, "a": 0
    }"#;
    let canonical = TestServer::start(&[("RECORD_ENCODING", "canonical")]).await;
    let relaxed = TestServer::start(&[]).await;
    let event = insert_event("82CAFE", 1_700_000_000, document);
    let original = as_bson(&parsed(document));

    let answer = canonical.post_json(&event).await;
    let data = canonical.record(&answer.written()[0])["data"].clone();
    let bytes = |value: Bson| match value {
        Bson::Document(document) => document.to_vec().expect("encodable"),
        other => panic!("not a document: {other:?}"),
    };
    assert_eq!(
        bytes(as_bson(&data)),
        bytes(original),
        "canonical: identical BSON"
    );
    assert_eq!(data["subnormal"], json!({"$numberDouble": "5e-324"}));

    let answer = relaxed.post_json(&event).await;
    let data = relaxed.record(&answer.written()[0])["data"].clone();
    let keys = |value: &Value| -> Vec<String> {
        value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(&data), keys(&parsed(document)), "key order kept");
    assert_eq!(
        data["_id"],
        json!(9007199254740993_i64),
        "no float rounding of int64"
    );
    assert_eq!(
        data["subnormal"].as_f64().map(f64::to_bits),
        Some(5e-324_f64.to_bits())
    );
    assert_eq!(
        data["negativeZero"].as_f64().map(f64::to_bits),
        Some((-0.0_f64).to_bits())
    );
    assert_eq!(data["big"].as_f64(), Some(f64::MAX));
    assert_eq!(data["oneThird"].as_f64(), Some(0.3333333333333333));
    assert_eq!(data["nan"], json!({"$numberDouble": "NaN"}));
    assert_eq!(
        data["decimal"],
        json!({"$numberDecimal": "1234567890.123456789012345678901234"})
    );
    assert_eq!(
        data["after9999"],
        json!({"$date": {"$numberLong": "253402300800001"}})
    );
    assert_eq!(
        data["before1970"],
        json!({"$date": {"$numberLong": "-62135596800000"}})
    );
    canonical.stop().await;
    relaxed.stop().await;
}

#[tokio::test]
async fn hostile_names_land_safely_under_the_directory() {
    let server = TestServer::start(&[]).await;
    let long = "x".repeat(1000);
    let hostile = [
        ("../../x", "../../etc"),
        ("a/b", "#?%"),
        ("\u{1}\n\t", "."),
        ("..", "Movies"),
        ("données", "movies"),
        (long.as_str(), long.as_str()),
    ];
    let mut serial = 0;
    for (db, coll) in hostile {
        for id in [
            json!(db),
            json!({"$oid": "573a1390f29313caabcd4135"}),
            json!({"k": coll, "n": 1}),
            json!(coll),
        ] {
            serial += 1;
            let event = json!({
                "_id": {"_data": format!("82{serial:04}")},
                "operationType": "insert",
                "clusterTime": {"$timestamp": {"t": 1_700_000_000, "i": 1}},
                "ns": {"db": db, "coll": coll},
                "documentKey": {"_id": id},
                "fullDocument": {"_id": id, "note": "hostile"},
            });
            let answer = server.post_json(&event.to_string()).await;
            assert_eq!(answer.status, 200, "{db:?}/{coll:?}: {}", answer.body);
            let path = &answer.written()[0];
            assert!(path.starts_with("changes/"), "{path}");
            assert!(
                path.split('/')
                    .all(|s| !s.is_empty() && !s.starts_with('.')),
                "{path}"
            );
            assert!(
                path.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/-_.=~".contains(c)),
                "{path}"
            );
            assert_eq!(
                server.record(path)["ns"]["db"],
                db,
                "the record keeps the real name"
            );
        }
    }
    // Every event has its own file, all inside the container directory.
    let files = server.files();
    assert_eq!(files.len(), serial);
    assert!(files.keys().all(|p| p.starts_with("changes/")));
    assert!(!server.lake.path().join("x").exists() && !server.lake.path().join("etc").exists());
    server.stop().await;
}

#[tokio::test]
async fn names_differing_only_in_case_do_not_collide() {
    let server = TestServer::start(&[]).await;
    for (serial, (coll, id)) in [("Movies", "ABC"), ("movies", "abc")]
        .into_iter()
        .enumerate()
    {
        let event = json!({
            "_id": {"_data": format!("82CASE{serial}")},
            "operationType": "insert",
            "clusterTime": {"$timestamp": {"t": 1_700_000_000, "i": 1}},
            "ns": {"db": "db", "coll": coll},
            "documentKey": {"_id": id},
            "fullDocument": {"_id": id},
        });
        assert_eq!(
            server.post_json(&event.to_string()).await.body["written"],
            1
        );
    }
    // Distinct names even on a case-insensitive file system: they differ beyond case.
    let names: std::collections::HashSet<String> =
        server.files().keys().map(|p| p.to_lowercase()).collect();
    assert_eq!(names.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn path_template_and_file_prefix_settings_apply() {
    let server = TestServer::start(&[
        ("storage_directory", "raw/mongo"),
        ("storage_file_name", "movies_"),
        (
            "PATH_TEMPLATE",
            "{coll}/{operationType}/dt={year}-{month}-{day}",
        ),
    ])
    .await;
    let answer = server.post_json(&sample("insert.json")).await;
    let path = &answer.written()[0];
    assert!(
        path.starts_with("raw/mongo/movies/insert/dt=2023-11-22/movies_1700"),
        "{path}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_byte_order_mark_before_json_or_ndjson_is_skipped() {
    let server = TestServer::start(&[]).await;
    let answer = server
        .post_json(&format!("\u{feff}{}", sample("insert.json")))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["written"], 1);
    let answer = server
        .post(
            "application/x-ndjson",
            format!("\u{feff}{}", sample("batch.ndjson")),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["events"], 5);
    server.stop().await;
}

#[tokio::test]
async fn empty_and_non_event_bodies_say_what_was_expected() {
    let server = TestServer::start(&[]).await;
    for (body, code) in [
        ("", "malformed_json"),
        ("  \n", "malformed_json"),
        ("42", "invalid_event"),
        ("\"an event\"", "invalid_event"),
    ] {
        let answer = server.post_json(body).await;
        assert_eq!(answer.status, 400, "{body:?}");
        assert_eq!(answer.body["error"], code, "{body:?}");
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("a change event object, a JSON array of them, or NDJSON"),
            "{body:?}: {detail}"
        );
    }
    assert!(server.files().is_empty());
    server.stop().await;
}

/// A large document of small numbers, in both encodings: the record's `data` is the
/// document, exactly (the streaming writer at scale, not only on small cases).
#[tokio::test]
async fn a_large_array_of_numbers_is_stored_exactly_in_both_encodings() {
    let numbers: Vec<String> = (0..200_000).map(|n| (n % 1000 - 500).to_string()).collect();
    let document = format!(r#"{{"_id":1,"v":[{}],"x":1.5}}"#, numbers.join(","));
    for encoding in ["relaxed", "canonical"] {
        let server = TestServer::start(&[("RECORD_ENCODING", encoding)]).await;
        let answer = server.post_json(&insert_event("82AB", 1, &document)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let path = answer.written()[0].clone();
        let data = server.record(&path)["data"].clone();
        let read_back = bson::Bson::try_from(data).expect("Extended JSON");
        let expected: serde_json::Value = serde_json::from_str(&document).expect("JSON");
        let expected = bson::Bson::try_from(expected).expect("Extended JSON");
        assert_eq!(read_back, expected, "{encoding}");
        server.stop().await;
    }
}

/// `MAX_INFLIGHT_BYTES`: a request that cannot fit beside the bytes already in flight
/// waits briefly, then gets 503 `server_busy` with `Retry-After`; nothing is written for
/// it, and once the bytes are free requests are served again.
#[tokio::test]
async fn requests_beyond_the_in_flight_budget_get_503_with_retry_after() {
    use tokio::io::AsyncWriteExt;

    let server =
        TestServer::start(&[("MAX_BODY_BYTES", "65536"), ("MAX_INFLIGHT_BYTES", "65536")]).await;
    // A client that declares 60 KB and sends only part of it holds 60 KB of the budget.
    let body = sample("insert.json");
    let padded = format!("{body}{}", " ".repeat(60_000 - body.len()));
    let mut stalled = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connects");
    let head = format!(
        "POST /api/ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        padded.len()
    );
    stalled.write_all(head.as_bytes()).await.expect("head");
    stalled
        .write_all(&padded.as_bytes()[..1000])
        .await
        .expect("part of the body");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    // 10 KB more does not fit beside it.
    let pad = ".".repeat(10_000);
    let answer = server
        .post_json(&insert_event(
            "82AC",
            2,
            &format!(r#"{{"_id":2,"pad":"{pad}"}}"#),
        ))
        .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["error"], "server_busy");
    assert_eq!(answer.header("retry-after"), Some("2"));
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "it waited for room first"
    );
    assert!(server.files().is_empty());

    // The stalled request completes; its bytes go back to the budget.
    stalled
        .write_all(&padded.as_bytes()[1000..])
        .await
        .expect("the rest");
    let mut reply = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&reply).contains("\"written\"") {
        use tokio::io::AsyncReadExt;
        let read = stalled.read(&mut buffer).await.expect("reply");
        assert!(
            read > 0,
            "reply ended early: {}",
            String::from_utf8_lossy(&reply)
        );
        reply.extend_from_slice(&buffer[..read]);
    }
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));
    let answer = server
        .post_json(&insert_event("82AD", 3, r#"{"_id":3}"#))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(server.files().len(), 2);
    server.stop().await;
}

/// Nesting far past any document's (on the async threads for a small body, on the
/// blocking pool for a large one) is refused, and the process serves on: it once
/// overflowed the stack and took every request on the worker with it.
#[tokio::test]
async fn deeply_nested_documents_are_refused_and_the_handler_lives_on() {
    let server = TestServer::start(&[]).await;
    for levels in [8_000, 40_000] {
        for (open, close) in [(r#"{"$a":"#, "}"), (r#"{"$scope":{"a":"#, "}}")] {
            let document = format!(
                r#"{{"d":{}1{}}}"#,
                open.repeat(levels),
                close.repeat(levels)
            );
            let answer = server.post_json(&insert_event("82AE", 1, &document)).await;
            assert_eq!(answer.status, 400, "{open} x {levels}");
            assert_eq!(answer.body["error"], "invalid_event");
        }
    }
    let answer = server.post_json(&sample("insert.json")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    server.stop().await;
}
