//! Snapshot events (issue #12) over real loopback HTTP into a real local lake: the record
//! each becomes, where it lands, re-delivery, its order against change events, and the
//! 400s for snapshot events that lack what the record needs.

mod support;

use std::collections::BTreeMap;

use bson::Bson;
use serde_json::{json, Value};
use support::TestServer;

/// 2024-06-16T10:00:05Z, increment 7.
const S: (u32, u32) = (1_718_532_005, 7);
const HOUR_OF_S: &str = "changes/shop/orders/year=2024/month=06/day=16/hour=10/";

fn snapshot(id: Value, full_document: Value) -> Value {
    json!({
        "operationType": "snapshot",
        "ns": {"db": "shop", "coll": "orders"},
        "documentKey": {"_id": id},
        "fullDocument": full_document,
        "snapshotTime": {"$timestamp": {"t": S.0, "i": S.1}},
    })
}

fn batch() -> Vec<Value> {
    vec![
        snapshot(
            json!({"$oid": "573a1390f29313caabcd42e8"}),
            json!({"_id": {"$oid": "573a1390f29313caabcd42e8"}, "total": {"$numberDecimal": "9.90"}}),
        ),
        snapshot(json!("A-17"), json!({"_id": "A-17", "lines": [1, 2]})),
        snapshot(
            json!({"$numberLong": "42"}),
            json!({"_id": {"$numberLong": "42"}, "at": {"$date": {"$numberLong": "1718532000000"}}}),
        ),
    ]
}

fn as_bson(value: &Value) -> Bson {
    Bson::try_from(value.clone()).expect("Extended JSON")
}

/// The change files (not compaction's or the mirror's late markers).
fn change_files(server: &TestServer) -> BTreeMap<String, Vec<u8>> {
    server
        .files()
        .into_iter()
        .filter(|(path, _)| path.starts_with("changes/"))
        .collect()
}

#[tokio::test]
async fn a_batch_of_snapshot_events_lands_in_the_hour_of_s_and_redelivery_is_already_present() {
    let server = TestServer::start(&[("RECORD_ENCODING", "canonical")]).await;
    let events = batch();
    let body = serde_json::to_string(&events).expect("JSON");
    let answer = server.post_json(&body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["written"], 3);
    let prefix = format!("82{:08X}{:08X}00", S.0, S.1);
    let mut event_ids = Vec::new();
    for (path, event) in answer.written().iter().zip(&events) {
        assert!(path.starts_with(HOUR_OF_S), "{path}");
        let record = server.record(path);
        let keys: Vec<&str> = record
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            [
                "operationType",
                "dataSource",
                "eventId",
                "ns",
                "documentKey",
                "clusterTime",
                "data"
            ]
        );
        assert_eq!(record["operationType"], "snapshot");
        assert_eq!(record["dataSource"], "fullDocument");
        assert_eq!(record["ns"], json!({"db": "shop", "coll": "orders"}));
        assert_eq!(
            as_bson(&record["documentKey"]),
            as_bson(&event["documentKey"])
        );
        assert_eq!(
            as_bson(&record["clusterTime"]),
            as_bson(&event["snapshotTime"])
        );
        assert_eq!(as_bson(&record["data"]), as_bson(&event["fullDocument"]));
        let event_id = record["eventId"].as_str().expect("eventId").to_owned();
        assert!(event_id.starts_with(&prefix), "{event_id}");
        assert_eq!(event_id.len(), 52, "{event_id}");
        event_ids.push(event_id);
    }
    event_ids.sort();
    event_ids.dedup();
    assert_eq!(event_ids.len(), 3, "one eventId per document");

    let before = change_files(&server);
    let again = server.post_json(&body).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["written"], 0);
    assert_eq!(again.already_present(), answer.written());
    assert_eq!(change_files(&server), before, "same paths, same bytes");

    // A change at exactly S (a real-shaped token) sorts after every snapshot record.
    let change = json!({
        "_id": {"_data": format!("82{:08X}{:08X}2B022C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F463C6F7065726174696F6E54797065003C696E736572740046646F63756D656E744B65790046645F6964003C412D3137000004", S.0, S.1)},
        "operationType": "update",
        "clusterTime": {"$timestamp": {"t": S.0, "i": S.1}},
        "ns": {"db": "shop", "coll": "orders"},
        "documentKey": {"_id": "A-17"},
        "fullDocument": {"_id": "A-17", "lines": [1, 2, 3]},
    });
    let answer = server.post_json(&change.to_string()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let change_id = server.record(&answer.written()[0])["eventId"].clone();
    let change_id = change_id.as_str().expect("eventId");
    assert!(event_ids.iter().all(|id| id.as_str() < change_id));
    server.stop().await;
}

#[tokio::test]
async fn snapshot_events_without_what_the_record_needs_get_400_naming_the_field() {
    let server = TestServer::start(&[]).await;
    let cases: [(&str, Option<Value>, &str); 6] = [
        ("snapshotTime", None, "snapshotTime"),
        (
            "snapshotTime",
            Some(json!({"$date": "2024-06-16T10:00:05Z"})),
            "snapshotTime",
        ),
        ("fullDocument", None, "fullDocument"),
        ("fullDocument", Some(Value::Null), "fullDocument"),
        ("fullDocument", Some(json!([1])), "fullDocument"),
        ("documentKey", Some(json!({"sku": 1})), "documentKey._id"),
    ];
    for (field, replacement, named) in cases {
        let mut events = batch();
        match replacement {
            Some(value) => events[1][field] = value,
            None => {
                events[1].as_object_mut().map(|event| event.remove(field));
            }
        }
        let answer = server
            .post_json(&serde_json::to_string(&events).expect("JSON"))
            .await;
        assert_eq!(answer.status, 400, "{field}: {}", answer.body);
        assert_eq!(answer.body["error"], "invalid_event");
        assert_eq!(answer.body["index"], 1);
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(&format!("`{named}`")), "{field}: {detail}");
    }
    assert!(
        change_files(&server).is_empty(),
        "a refused batch writes nothing"
    );
    server.stop().await;
}
