//! The record written to the lake for one data change: which document is kept, and how
//! the file's JSON is laid out.

use bson::{Bson, DateTime, Document, Timestamp};

use super::change_event::{DataChange, DataOperation, EventError, Namespace};
use super::extjson::{
    write_bson_document, write_document, write_extjson, write_str, Encoding, ExtJsonError,
    JsonDocument,
};

/// Where a record's `data` came from in the change event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSource {
    FullDocument,
    FullDocumentBeforeChange,
    DocumentKey,
}

impl DataSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DataSource::FullDocument => "fullDocument",
            DataSource::FullDocumentBeforeChange => "fullDocumentBeforeChange",
            DataSource::DocumentKey => "documentKey",
        }
    }
}

/// One lake record: the selected document plus the event's identity and time.
#[derive(Debug, Clone)]
pub struct Record<'b> {
    pub operation: DataOperation,
    pub data_source: DataSource,
    pub data: JsonDocument<'b>,
    pub event_id: String,
    pub ns: Namespace,
    pub document_key: Document,
    pub cluster_time: Timestamp,
    pub wall_time: Option<DateTime>,
    pub txn_number: Option<Bson>,
    pub update_description: Option<JsonDocument<'b>>,
}

impl<'b> TryFrom<DataChange<'b>> for Record<'b> {
    type Error = EventError;

    /// Selects the document to keep (README, "Selecting the document"): the post-image
    /// when there is one, the pre-image for deletes, else the document key.
    fn try_from(change: DataChange<'b>) -> Result<Record<'b>, EventError> {
        let (data_source, data) = match (change.operation, change.full_document) {
            (
                DataOperation::Insert | DataOperation::Replace | DataOperation::Snapshot,
                Some(full),
            ) => (DataSource::FullDocument, full),
            (DataOperation::Insert | DataOperation::Replace | DataOperation::Snapshot, None) => {
                return Err(EventError {
                    field: "fullDocument",
                    problem: format!("is required for {}", change.operation.as_str()),
                })
            }
            (DataOperation::Update, Some(full)) => (DataSource::FullDocument, full),
            (DataOperation::Delete, _) => match change.full_document_before_change {
                Some(before) => (DataSource::FullDocumentBeforeChange, before),
                None => (DataSource::DocumentKey, change.document_key_text),
            },
            (DataOperation::Update, None) => (DataSource::DocumentKey, change.document_key_text),
        };
        Ok(Record {
            operation: change.operation,
            data_source,
            data,
            event_id: change.event_id,
            ns: change.ns,
            document_key: change.document_key,
            cluster_time: change.cluster_time,
            wall_time: change.wall_time,
            txn_number: change.txn_number,
            update_description: change.update_description,
        })
    }
}

impl Record<'_> {
    /// The file's contents: one JSON object on one line, ending in `\n`, so a folder of
    /// records is also valid JSON Lines for Spark's and Synapse's readers. The documents'
    /// Extended JSON is checked here, as it is written.
    ///
    /// Deterministic: the same event always gives the same bytes, which is what makes a
    /// redelivered event land as an identical file.
    pub fn to_json_line(&self, encoding: Encoding) -> Result<Vec<u8>, EventError> {
        // Relaxed output is about the size of its input: one allocation in the common case.
        let documents =
            self.data.as_str().len() + self.update_description.map_or(0, |u| u.as_str().len());
        let mut line = JsonObject::with_capacity(512 + documents);
        line.text("operationType", self.operation.as_str());
        line.text("dataSource", self.data_source.as_str());
        line.text("eventId", &self.event_id);
        let ns = doc_ns(&self.ns);
        line.bson("ns", &ns, encoding);
        line.key("documentKey");
        write_bson_document(&mut line.out, &self.document_key, encoding);
        line.bson("clusterTime", &Bson::Timestamp(self.cluster_time), encoding);
        if let Some(wall_time) = self.wall_time {
            line.bson("wallTime", &Bson::DateTime(wall_time), encoding);
        }
        if let Some(txn_number) = &self.txn_number {
            line.bson("txnNumber", txn_number, encoding);
        }
        if let Some(update) = self.update_description {
            line.document("updateDescription", update, encoding)
                .map_err(|error| EventError::in_field("updateDescription", error))?;
        }
        line.document("data", self.data, encoding)
            .map_err(|error| EventError::in_field(self.data_source.as_str(), error))?;
        Ok(line.finish())
    }
}

fn doc_ns(ns: &Namespace) -> Bson {
    let mut document = Document::new();
    document.insert("db", ns.db.as_str());
    document.insert("coll", ns.coll.as_str());
    Bson::Document(document)
}

/// Writes a one-line JSON object field by field.
struct JsonObject {
    out: Vec<u8>,
}

impl JsonObject {
    fn with_capacity(capacity: usize) -> JsonObject {
        let mut out = Vec::with_capacity(capacity);
        out.push(b'{');
        JsonObject { out }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        write_str(&mut self.out, key);
        self.out.push(b':');
    }

    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        write_str(&mut self.out, value);
    }

    fn bson(&mut self, key: &str, value: &Bson, encoding: Encoding) {
        self.key(key);
        write_extjson(&mut self.out, value, encoding);
    }

    fn document(
        &mut self,
        key: &str,
        document: JsonDocument<'_>,
        encoding: Encoding,
    ) -> Result<(), ExtJsonError> {
        self.key(key);
        write_document(&mut self.out, document, encoding)
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"}\n");
        // A batch holds every record until it is stored: no room left over in each.
        self.out.shrink_to_fit();
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;
    use serde_json::value::RawValue;

    /// Test documents live as long as the test: leaked on purpose.
    fn text(json: &str) -> JsonDocument<'static> {
        let raw: &'static RawValue =
            Box::leak(RawValue::from_string(json.to_owned()).expect("JSON"));
        JsonDocument::from_raw(raw)
            .expect("an object")
            .expect("not null")
    }

    fn change(operation: DataOperation) -> DataChange<'static> {
        DataChange {
            operation,
            event_id: "82AB".to_owned(),
            ns: Namespace {
                db: "sample_mflix".to_owned(),
                coll: "movies".to_owned(),
            },
            document_key: doc! {"_id": 7},
            document_key_text: text(r#"{"_id":7}"#),
            cluster_time: Timestamp {
                time: 1_700_000_000,
                increment: 1,
            },
            wall_time: None,
            txn_number: None,
            full_document: None,
            full_document_before_change: None,
            update_description: None,
        }
    }

    fn select(change: DataChange<'_>) -> (DataSource, &str) {
        let record = Record::try_from(change).expect("selectable");
        (record.data_source, record.data.as_str())
    }

    #[test]
    fn selection_follows_the_table() {
        let full = r#"{"_id":7,"title":"after"}"#;
        let before = r#"{"_id":7,"title":"before"}"#;
        let key = r#"{"_id":7}"#;
        for operation in [
            DataOperation::Insert,
            DataOperation::Replace,
            DataOperation::Update,
        ] {
            let mut event = change(operation);
            event.full_document = Some(text(full));
            assert_eq!(select(event), (DataSource::FullDocument, full));
        }
        let mut update = change(DataOperation::Update);
        update.update_description = Some(text(r#"{"updatedFields":{"title":"after"}}"#));
        let record = Record::try_from(update).expect("selectable");
        assert_eq!(record.data_source, DataSource::DocumentKey);
        assert_eq!(record.data.as_str(), key);
        assert!(record.update_description.is_some());
        let mut delete = change(DataOperation::Delete);
        delete.full_document_before_change = Some(text(before));
        assert_eq!(
            select(delete),
            (DataSource::FullDocumentBeforeChange, before)
        );
        assert_eq!(
            select(change(DataOperation::Delete)),
            (DataSource::DocumentKey, key)
        );
    }

    #[test]
    fn insert_or_snapshot_without_full_document_is_an_error() {
        for operation in [DataOperation::Insert, DataOperation::Snapshot] {
            let error = Record::try_from(change(operation)).expect_err("no document");
            assert_eq!(error.field, "fullDocument");
            assert!(error.to_string().contains(operation.as_str()), "{error}");
        }
    }

    #[test]
    fn a_snapshot_keeps_its_full_document() {
        let full = r#"{"_id":7,"title":"then"}"#;
        let mut event = change(DataOperation::Snapshot);
        event.full_document = Some(text(full));
        assert_eq!(select(event), (DataSource::FullDocument, full));
    }

    #[test]
    fn json_line_is_one_line_with_fixed_key_order() {
        let mut event = change(DataOperation::Insert);
        event.full_document = Some(text(r#"{"_id":7,"n":{"$numberLong":"1"}}"#));
        let record = Record::try_from(event).expect("selectable");
        let line = record.to_json_line(Encoding::Canonical).expect("valid");
        let text = String::from_utf8(line).expect("utf-8");
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        let keys: Vec<&str> = value
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
        assert_eq!(value["data"]["n"], serde_json::json!({"$numberLong": "1"}));
        assert_eq!(
            value["documentKey"],
            serde_json::json!({"_id": {"$numberInt": "7"}})
        );
        assert_eq!(
            record.to_json_line(Encoding::Canonical).expect("valid"),
            text.into_bytes()
        );
    }

    #[test]
    fn invalid_documents_are_refused_naming_the_field_and_path() {
        let mut event = change(DataOperation::Insert);
        event.full_document = Some(text(r#"{"a":{"b":{"$numberInt":"x"}}}"#));
        let record = Record::try_from(event).expect("selectable");
        let error = record.to_json_line(Encoding::Relaxed).expect_err("invalid");
        assert_eq!(error.field, "fullDocument");
        assert!(error.to_string().contains("`fullDocument.a.b`"), "{error}");
    }
}
