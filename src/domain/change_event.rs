//! A MongoDB change event, parsed once at the edge.
//!
//! Field names and shapes follow the change-stream event format
//! (<https://www.mongodb.com/docs/manual/reference/change-events/>). Only what the lake needs
//! is checked; unknown fields are ignored so new server versions do not break ingestion.

use bson::{Bson, DateTime, Document, Timestamp};

/// A parsed change event: either a change to one document, which the lake stores, or any
/// other event (drop, rename, invalidate, DDL, ...), which is acknowledged and skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeEvent {
    /// Boxed: a data change is large, the other kind is a name.
    Data(Box<DataChange>),
    Other {
        operation_type: String,
    },
}

/// The four operations that change a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOperation {
    Insert,
    Update,
    Replace,
    Delete,
}

impl DataOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            DataOperation::Insert => "insert",
            DataOperation::Update => "update",
            DataOperation::Replace => "replace",
            DataOperation::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub db: String,
    pub coll: String,
}

/// A change to one document, with everything the lake record is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct DataChange {
    pub operation: DataOperation,
    /// The resume token's `_data` string: unique per event, stable across redeliveries.
    pub event_id: String,
    pub ns: Namespace,
    pub document_key: Document,
    pub cluster_time: Timestamp,
    pub wall_time: Option<DateTime>,
    pub txn_number: Option<Bson>,
    /// `None` when absent or `null` (update without "Full Document", or deleted since).
    pub full_document: Option<Document>,
    pub full_document_before_change: Option<Document>,
    pub update_description: Option<Document>,
}

/// Why a body is not a usable change event; names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` {problem}")]
pub struct EventError {
    pub field: &'static str,
    pub problem: String,
}

impl EventError {
    fn missing(field: &'static str) -> EventError {
        EventError {
            field,
            problem: "is missing".to_owned(),
        }
    }

    fn wrong_type(field: &'static str, expected: &str, found: &Bson) -> EventError {
        EventError {
            field,
            problem: format!("must be {expected}, found {:?}", found.element_type()),
        }
    }
}

impl ChangeEvent {
    /// Parses one change event. Takes the document by value so the (possibly large)
    /// documents inside move into the result without copying.
    pub fn parse(mut event: Document) -> Result<ChangeEvent, EventError> {
        let operation_type = match event.remove("operationType") {
            Some(Bson::String(name)) => name,
            Some(other) => return Err(EventError::wrong_type("operationType", "a string", &other)),
            None => return Err(EventError::missing("operationType")),
        };
        let operation = match operation_type.as_str() {
            "insert" => DataOperation::Insert,
            "update" => DataOperation::Update,
            "replace" => DataOperation::Replace,
            "delete" => DataOperation::Delete,
            _ => return Ok(ChangeEvent::Other { operation_type }),
        };

        let event_id = match take_document(&mut event, "_id")?.remove("_data") {
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
        let cluster_time = match event.remove("clusterTime") {
            Some(Bson::Timestamp(timestamp)) => timestamp,
            Some(other) => {
                return Err(EventError::wrong_type("clusterTime", "a timestamp", &other))
            }
            None => return Err(EventError::missing("clusterTime")),
        };
        let wall_time = match event.remove("wallTime") {
            Some(Bson::DateTime(date)) => Some(date),
            None | Some(Bson::Null) => None,
            Some(other) => return Err(EventError::wrong_type("wallTime", "a date", &other)),
        };
        let mut ns = take_document(&mut event, "ns")?;
        let ns = Namespace {
            db: take_string(&mut ns, "ns.db")?,
            coll: take_string(&mut ns, "ns.coll")?,
        };
        let document_key = take_document(&mut event, "documentKey")?;

        Ok(ChangeEvent::Data(Box::new(DataChange {
            operation,
            event_id,
            ns,
            document_key,
            cluster_time,
            wall_time,
            txn_number: event.remove("txnNumber"),
            full_document: take_optional_document(&mut event, "fullDocument")?,
            full_document_before_change: take_optional_document(
                &mut event,
                "fullDocumentBeforeChange",
            )?,
            update_description: take_optional_document(&mut event, "updateDescription")?,
        })))
    }
}

fn take_document(event: &mut Document, field: &'static str) -> Result<Document, EventError> {
    match event.remove(field) {
        Some(Bson::Document(document)) => Ok(document),
        Some(other) => Err(EventError::wrong_type(field, "a document", &other)),
        None => Err(EventError::missing(field)),
    }
}

fn take_optional_document(
    event: &mut Document,
    field: &'static str,
) -> Result<Option<Document>, EventError> {
    match event.remove(field) {
        Some(Bson::Document(document)) => Ok(Some(document)),
        None | Some(Bson::Null) => Ok(None),
        Some(other) => Err(EventError::wrong_type(field, "a document or null", &other)),
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
    use bson::{doc, oid::ObjectId};

    fn insert_event() -> Document {
        doc! {
            "_id": {"_data": "8264F1A2B3000000012B022C0100296E5A1004"},
            "operationType": "insert",
            "clusterTime": Timestamp { time: 1_700_000_000, increment: 3 },
            "wallTime": DateTime::from_millis(1_700_000_000_123),
            "ns": {"db": "sample_mflix", "coll": "movies"},
            "documentKey": {"_id": ObjectId::parse_str("573a1390f29313caabcd4135").unwrap_or_default()},
            "fullDocument": {"_id": 1, "title": "Blacksmith Scene"},
        }
    }

    #[test]
    fn parses_a_data_change() {
        let ChangeEvent::Data(change) = ChangeEvent::parse(insert_event()).expect("valid") else {
            panic!("insert is a data change");
        };
        assert_eq!(change.operation, DataOperation::Insert);
        assert_eq!(change.event_id, "8264F1A2B3000000012B022C0100296E5A1004");
        assert_eq!(change.ns.coll, "movies");
        assert_eq!(change.cluster_time.increment, 3);
        assert_eq!(
            change.full_document,
            Some(doc! {"_id": 1, "title": "Blacksmith Scene"})
        );
    }

    #[test]
    fn non_data_events_need_only_an_operation_type() {
        let parsed = ChangeEvent::parse(doc! {"operationType": "dropDatabase"});
        assert_eq!(
            parsed,
            Ok(ChangeEvent::Other {
                operation_type: "dropDatabase".to_owned()
            })
        );
    }

    #[test]
    fn null_full_document_is_absent() {
        let mut event = insert_event();
        event.insert("operationType", "update");
        event.insert("fullDocument", Bson::Null);
        let ChangeEvent::Data(change) = ChangeEvent::parse(event).expect("valid") else {
            panic!("update is a data change");
        };
        assert_eq!(change.full_document, None);
    }

    #[test]
    fn errors_name_the_field() {
        let cases: [(&str, Option<Bson>, &str); 6] = [
            ("operationType", None, "operationType"),
            ("operationType", Some(Bson::Int32(1)), "operationType"),
            ("_id", Some(Bson::Document(doc! {"x": 1})), "_id._data"),
            ("clusterTime", Some(Bson::Int64(5)), "clusterTime"),
            ("ns", Some(Bson::Document(doc! {"db": "d"})), "ns.coll"),
            ("documentKey", None, "documentKey"),
        ];
        for (field, replacement, named) in cases {
            let mut event = insert_event();
            match replacement {
                Some(value) => event.insert(field, value),
                None => event.remove(field),
            };
            let error = ChangeEvent::parse(event).expect_err(field);
            assert_eq!(error.field, named, "{error}");
        }
    }
}
