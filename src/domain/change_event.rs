//! A MongoDB change event, parsed once at the edge.
//!
//! Field names and shapes follow the change-stream event format
//! (<https://www.mongodb.com/docs/manual/reference/change-events/>). Only what the lake needs
//! is checked; unknown fields are ignored so new server versions do not break ingestion.

use bson::{Bson, DateTime, Document, Timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::extjson::{read_value, ExtJsonError, JsonDocument};
use super::snapshot::snapshot_identity;

/// A parsed change event: either a change to one document, which the lake stores, or any
/// other event (drop, rename, invalidate, DDL, ...), which is acknowledged and skipped.
///
/// The documents it carries stay text borrowed from the request body (`'b`) until the
/// record is written: a document costs its output, never a tree.
#[derive(Debug, Clone)]
pub enum ChangeEvent<'b> {
    /// Boxed: a data change is large, the other kind is a name.
    Data(Box<DataChange<'b>>),
    Other {
        operation_type: String,
    },
}

/// The four operations that change a document, and a snapshot of one (issue #12: a
/// document that existed before the trigger, read by the Atlas side's `lakeSnapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOperation {
    Insert,
    Update,
    Replace,
    Delete,
    Snapshot,
}

impl DataOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            DataOperation::Insert => "insert",
            DataOperation::Update => "update",
            DataOperation::Replace => "replace",
            DataOperation::Delete => "delete",
            DataOperation::Snapshot => "snapshot",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub db: String,
    pub coll: String,
}

/// A change to one document, with everything the lake record is made of.
#[derive(Debug, Clone)]
pub struct DataChange<'b> {
    pub operation: DataOperation,
    /// The resume token's `_data` string (a snapshot's is made from its time and key):
    /// unique per event, stable across redeliveries.
    pub event_id: String,
    pub ns: Namespace,
    /// Read into BSON: the file name is made from its `_id`.
    pub document_key: Document,
    /// The same document key as text, for records whose `data` is the key.
    pub document_key_text: JsonDocument<'b>,
    /// A snapshot's `snapshotTime`.
    pub cluster_time: Timestamp,
    pub wall_time: Option<DateTime>,
    pub txn_number: Option<Bson>,
    /// `None` when absent or `null` (update without "Full Document", or deleted since).
    pub full_document: Option<JsonDocument<'b>>,
    pub full_document_before_change: Option<JsonDocument<'b>>,
    pub update_description: Option<JsonDocument<'b>>,
}

/// Why a body is not a usable change event; names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` {problem}")]
pub struct EventError {
    pub field: &'static str,
    pub problem: String,
}

impl EventError {
    pub(crate) fn missing(field: &'static str) -> EventError {
        EventError {
            field,
            problem: "is missing".to_owned(),
        }
    }

    pub(crate) fn wrong_type(field: &'static str, expected: &str, found: &Bson) -> EventError {
        EventError {
            field,
            problem: format!("must be {expected}, found {:?}", found.element_type()),
        }
    }

    /// `field` (or a value inside it, named by the error's path) is not valid Extended JSON.
    pub(crate) fn in_field(field: &'static str, error: ExtJsonError) -> EventError {
        let problem = if error.path.is_empty() {
            format!("is not valid: {}", error.problem)
        } else {
            format!(
                "has an invalid value at `{field}.{}`: {}",
                error.path.join("."),
                error.problem
            )
        };
        EventError { field, problem }
    }
}

/// The top-level fields of a change event the lake reads, as text; the rest is skipped
/// unread. A field given twice is refused (which one would be meant?).
#[derive(Deserialize)]
struct EventFields<'b> {
    #[serde(rename = "_id", borrow, default)]
    id: Option<&'b RawValue>,
    #[serde(rename = "operationType", borrow, default)]
    operation_type: Option<&'b RawValue>,
    #[serde(rename = "clusterTime", borrow, default)]
    cluster_time: Option<&'b RawValue>,
    #[serde(rename = "wallTime", borrow, default)]
    wall_time: Option<&'b RawValue>,
    #[serde(borrow, default)]
    ns: Option<&'b RawValue>,
    #[serde(rename = "documentKey", borrow, default)]
    document_key: Option<&'b RawValue>,
    #[serde(rename = "txnNumber", borrow, default)]
    txn_number: Option<&'b RawValue>,
    #[serde(rename = "fullDocument", borrow, default)]
    full_document: Option<&'b RawValue>,
    #[serde(rename = "fullDocumentBeforeChange", borrow, default)]
    full_document_before_change: Option<&'b RawValue>,
    #[serde(rename = "updateDescription", borrow, default)]
    update_description: Option<&'b RawValue>,
    #[serde(rename = "snapshotTime", borrow, default)]
    snapshot_time: Option<&'b RawValue>,
}

impl<'b> ChangeEvent<'b> {
    /// Parses one change event from its JSON text (an object). Small fields are read into
    /// BSON; documents stay text, checked when the record is written.
    pub fn parse(event: &'b RawValue) -> Result<ChangeEvent<'b>, EventError> {
        let fields: EventFields<'b> =
            serde_json::from_str(event.get()).map_err(|error| EventError {
                field: "event",
                problem: format!("is not a change event object: {error}"),
            })?;
        let operation_type = match small(fields.operation_type, "operationType")? {
            Some(Bson::String(name)) => name,
            Some(other) => return Err(EventError::wrong_type("operationType", "a string", &other)),
            None => return Err(EventError::missing("operationType")),
        };
        let operation = match operation_type.as_str() {
            "insert" => DataOperation::Insert,
            "update" => DataOperation::Update,
            "replace" => DataOperation::Replace,
            "delete" => DataOperation::Delete,
            "snapshot" => DataOperation::Snapshot,
            _ => return Ok(ChangeEvent::Other { operation_type }),
        };
        let wall_time = match small(fields.wall_time, "wallTime")? {
            Some(Bson::DateTime(date)) => Some(date),
            None | Some(Bson::Null) => None,
            Some(other) => return Err(EventError::wrong_type("wallTime", "a date", &other)),
        };
        let mut ns = document(small(fields.ns, "ns")?, "ns")?;
        let ns = Namespace {
            db: take_string(&mut ns, "ns.db")?,
            coll: take_string(&mut ns, "ns.coll")?,
        };
        let document_key = document(small(fields.document_key, "documentKey")?, "documentKey")?;
        let document_key_text = text(fields.document_key, "documentKey")?
            .ok_or_else(|| EventError::missing("documentKey"))?;
        let (event_id, cluster_time) = match operation {
            DataOperation::Snapshot => snapshot_identity(
                small(fields.snapshot_time, "snapshotTime")?,
                &ns,
                &document_key,
            )?,
            _ => change_identity(fields.id, fields.cluster_time)?,
        };
        let change = DataChange {
            operation,
            event_id,
            ns,
            document_key,
            document_key_text,
            cluster_time,
            wall_time,
            txn_number: small(fields.txn_number, "txnNumber")?,
            full_document: text(fields.full_document, "fullDocument")?,
            full_document_before_change: text(
                fields.full_document_before_change,
                "fullDocumentBeforeChange",
            )?,
            update_description: text(fields.update_description, "updateDescription")?,
        };
        Ok(ChangeEvent::Data(Box::new(match operation {
            // A snapshot's record is its documented shape only: a read time or anything
            // else a sender adds would make a re-sent page differ from the first.
            DataOperation::Snapshot => DataChange {
                wall_time: None,
                txn_number: None,
                full_document_before_change: None,
                update_description: None,
                ..change
            },
            _ => change,
        })))
    }
}

/// A change event's resume token `_data` and `clusterTime`.
fn change_identity(
    id: Option<&RawValue>,
    cluster_time: Option<&RawValue>,
) -> Result<(String, Timestamp), EventError> {
    let event_id = match document(small(id, "_id")?, "_id")?.remove("_data") {
        Some(Bson::String(token)) if !token.is_empty() => token,
        Some(other) => {
            return Err(EventError::wrong_type(
                "_id._data",
                "a non-empty string",
                &other,
            ))
        }
        None => return Err(EventError::missing("_id._data")),
    };
    match small(cluster_time, "clusterTime")? {
        Some(Bson::Timestamp(timestamp)) => Ok((event_id, timestamp)),
        Some(other) => Err(EventError::wrong_type("clusterTime", "a timestamp", &other)),
        None => Err(EventError::missing("clusterTime")),
    }
}

/// A small field read into BSON.
fn small(raw: Option<&RawValue>, field: &'static str) -> Result<Option<Bson>, EventError> {
    raw.map(read_value)
        .transpose()
        .map_err(|error| EventError::in_field(field, error))
}

/// A document field kept as text; `None` when absent or `null`.
fn text<'b>(
    raw: Option<&'b RawValue>,
    field: &'static str,
) -> Result<Option<JsonDocument<'b>>, EventError> {
    match raw.map(JsonDocument::from_raw).transpose() {
        Ok(document) => Ok(document.flatten()),
        Err(_) => Err(EventError {
            field,
            problem: "must be a document or null".to_owned(),
        }),
    }
}

fn document(value: Option<Bson>, field: &'static str) -> Result<Document, EventError> {
    match value {
        Some(Bson::Document(document)) => Ok(document),
        Some(other) => Err(EventError::wrong_type(field, "a document", &other)),
        None => Err(EventError::missing(field)),
    }
}

fn take_string(document: &mut Document, field: &'static str) -> Result<String, EventError> {
    // `field` is the dotted path for messages; the key is its last part.
    let key = field.rsplit('.').next().unwrap_or(field);
    match document.remove(key) {
        Some(Bson::String(text)) => Ok(text),
        Some(other) => Err(EventError::wrong_type(field, "a string", &other)),
        None => Err(EventError::missing(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn insert_event() -> Value {
        json!({
            "_id": {"_data": "8264F1A2B3000000012B022C0100296E5A1004"},
            "operationType": "insert",
            "clusterTime": {"$timestamp": {"t": 1_700_000_000, "i": 3}},
            "wallTime": {"$date": {"$numberLong": "1700000000123"}},
            "ns": {"db": "sample_mflix", "coll": "movies"},
            "documentKey": {"_id": {"$oid": "573a1390f29313caabcd4135"}},
            "fullDocument": {"_id": 1, "title": "Blacksmith Scene"},
        })
    }

    fn raw(event: &Value) -> Box<RawValue> {
        RawValue::from_string(event.to_string()).expect("JSON")
    }

    #[test]
    fn parses_a_data_change() {
        let text = raw(&insert_event());
        let ChangeEvent::Data(change) = ChangeEvent::parse(&text).expect("valid") else {
            panic!("insert is a data change");
        };
        assert_eq!(change.operation, DataOperation::Insert);
        assert_eq!(change.event_id, "8264F1A2B3000000012B022C0100296E5A1004");
        assert_eq!(change.ns.coll, "movies");
        assert_eq!(change.cluster_time.increment, 3);
        assert_eq!(
            change.wall_time,
            Some(DateTime::from_millis(1_700_000_000_123))
        );
        assert_eq!(
            change.full_document.map(|d| d.as_str()),
            Some(r#"{"_id":1,"title":"Blacksmith Scene"}"#)
        );
        assert!(matches!(
            change.document_key.get("_id"),
            Some(Bson::ObjectId(_))
        ));
    }

    #[test]
    fn non_data_events_need_only_an_operation_type() {
        let text = raw(&json!({"operationType": "dropDatabase", "other": [1, {"$bad": 1}]}));
        let parsed = ChangeEvent::parse(&text).expect("valid");
        assert!(matches!(
            parsed,
            ChangeEvent::Other { operation_type } if operation_type == "dropDatabase"
        ));
    }

    #[test]
    fn null_full_document_is_absent() {
        let mut event = insert_event();
        event["operationType"] = json!("update");
        event["fullDocument"] = Value::Null;
        let text = raw(&event);
        let ChangeEvent::Data(change) = ChangeEvent::parse(&text).expect("valid") else {
            panic!("update is a data change");
        };
        assert!(change.full_document.is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let cases: [(&str, Option<Value>, &str); 9] = [
            ("operationType", None, "operationType"),
            ("operationType", Some(json!(1)), "operationType"),
            ("_id", Some(json!({"x": 1})), "_id._data"),
            (
                "clusterTime",
                Some(json!({"$numberLong": "5"})),
                "clusterTime",
            ),
            ("clusterTime", Some(json!({"$timestamp": 5})), "clusterTime"),
            ("ns", Some(json!({"db": "d"})), "ns.coll"),
            ("documentKey", None, "documentKey"),
            ("fullDocument", Some(json!([1])), "fullDocument"),
            (
                "documentKey",
                Some(json!({"_id": (0..20_000).collect::<Vec<_>>()})),
                "documentKey",
            ),
        ];
        for (field, replacement, named) in cases {
            let mut event = insert_event();
            match replacement {
                Some(value) => event[field] = value,
                None => {
                    event.as_object_mut().map(|e| e.remove(field));
                }
            };
            let text = raw(&event);
            let error = ChangeEvent::parse(&text).expect_err(field);
            assert_eq!(error.field, named, "{error}");
        }
        let twice = RawValue::from_string(
            r#"{"operationType":"insert","operationType":"delete"}"#.to_owned(),
        )
        .expect("JSON");
        let error = ChangeEvent::parse(&twice).expect_err("a field given twice");
        assert!(error.to_string().contains("duplicate field"), "{error}");
    }

    fn snapshot_event() -> Value {
        json!({
            "operationType": "snapshot",
            "ns": {"db": "shop", "coll": "orders"},
            "documentKey": {"_id": {"$oid": "573a1390f29313caabcd4135"}},
            "fullDocument": {"_id": {"$oid": "573a1390f29313caabcd4135"}, "total": 5},
            "snapshotTime": {"$timestamp": {"t": 1_700_000_000, "i": 4}},
        })
    }

    #[test]
    fn parses_a_snapshot_with_a_made_event_id() {
        let text = raw(&snapshot_event());
        let ChangeEvent::Data(change) = ChangeEvent::parse(&text).expect("valid") else {
            panic!("a snapshot is a data change");
        };
        assert_eq!(change.operation, DataOperation::Snapshot);
        assert_eq!(
            change.cluster_time,
            Timestamp {
                time: 1_700_000_000,
                increment: 4
            }
        );
        assert!(change.event_id.starts_with("826553F1000000000400"));
        assert_eq!(change.event_id.len(), 52);
        assert!(change.full_document.is_some());
        // A change's own fields do not make the identity: no resume token is read.
        let mut with_token = snapshot_event();
        with_token["_id"] = json!({"_data": "82AA"});
        with_token["clusterTime"] = json!({"$timestamp": {"t": 1, "i": 1}});
        let text = raw(&with_token);
        let ChangeEvent::Data(same) = ChangeEvent::parse(&text).expect("valid") else {
            panic!("a snapshot is a data change");
        };
        assert_eq!(same.event_id, change.event_id);
        assert_eq!(same.cluster_time, change.cluster_time);
        // Nor do a change's other fields reach a snapshot's record.
        let mut with_extras = snapshot_event();
        with_extras["wallTime"] = json!({"$date": {"$numberLong": "1700000000123"}});
        with_extras["txnNumber"] = json!({"$numberLong": "3"});
        with_extras["updateDescription"] = json!({"updatedFields": {}});
        let text = raw(&with_extras);
        let ChangeEvent::Data(extras) = ChangeEvent::parse(&text).expect("valid") else {
            panic!("a snapshot is a data change");
        };
        assert!(extras.wall_time.is_none() && extras.txn_number.is_none());
        assert!(extras.update_description.is_none());
    }

    #[test]
    fn snapshot_errors_name_the_field() {
        let cases: [(&str, Option<Value>, &str); 5] = [
            ("snapshotTime", None, "snapshotTime"),
            (
                "snapshotTime",
                Some(json!({"$date": "2024-01-01T00:00:00Z"})),
                "snapshotTime",
            ),
            (
                "snapshotTime",
                Some(json!({"$timestamp": 5})),
                "snapshotTime",
            ),
            ("documentKey", Some(json!({"k": 1})), "documentKey._id"),
            ("fullDocument", Some(json!("text")), "fullDocument"),
        ];
        for (field, replacement, named) in cases {
            let mut event = snapshot_event();
            match replacement {
                Some(value) => event[field] = value,
                None => {
                    event.as_object_mut().map(|e| e.remove(field));
                }
            };
            let text = raw(&event);
            let error = ChangeEvent::parse(&text).expect_err(field);
            assert_eq!(error.field, named, "{error}");
        }
    }
}
