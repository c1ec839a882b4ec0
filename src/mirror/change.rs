//! A change file read back for the mirror: its `eventId`, its key and what the table
//! should do with it.

use bson::{Bson, Document};
use serde::Deserialize;
use serde_json::Value;

use super::columns::key_text;

/// What a change asks of its table.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeKind {
    /// Insert, replace, update with `fullDocument`: the whole document.
    Upsert(Document),
    Delete,
    /// An update without `fullDocument`: the table cannot take it.
    NoFullDocument,
}

/// One change file's record, as the mirror needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorChange {
    pub event_id: String,
    /// The `_id` column's text ([`key_text`]).
    pub key: String,
    pub kind: ChangeKind,
}

/// Why a change file cannot be mirrored (it was not written by this service, or by a
/// version with another record shape).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChangeFileError(String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordLine {
    operation_type: String,
    data_source: String,
    event_id: String,
    document_key: Value,
    data: Value,
}

impl MirrorChange {
    /// Parses a change file (one JSON line, README "Record format").
    pub fn parse(bytes: &[u8]) -> Result<MirrorChange, ChangeFileError> {
        // serde's and bson's messages can quote the document: only where and what kind.
        let line: RecordLine = serde_json::from_slice(bytes).map_err(|error| {
            ChangeFileError(format!(
                "not a change record ({:?} error at line {}, column {})",
                error.classify(),
                error.line(),
                error.column()
            ))
        })?;
        let key = match document(line.document_key, "documentKey")?.get("_id") {
            Some(id) => key_text(id),
            None => return Err(ChangeFileError("documentKey has no _id".to_owned())),
        };
        let kind = match (line.operation_type.as_str(), line.data_source.as_str()) {
            ("delete", _) => ChangeKind::Delete,
            ("insert" | "replace" | "update" | "snapshot", "fullDocument") => {
                ChangeKind::Upsert(document(line.data, "data")?)
            }
            ("update", "documentKey") => ChangeKind::NoFullDocument,
            (operation, source) => {
                return Err(ChangeFileError(format!(
                    "operationType {operation:?} with dataSource {source:?} is not a data change"
                )))
            }
        };
        Ok(MirrorChange {
            event_id: line.event_id,
            key,
            kind,
        })
    }
}

fn document(value: Value, field: &str) -> Result<Document, ChangeFileError> {
    match Bson::try_from(value) {
        Ok(Bson::Document(document)) => Ok(document),
        Ok(_) => Err(ChangeFileError(format!("{field} is not a document"))),
        Err(_) => Err(ChangeFileError(format!("{field} is not Extended JSON"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(op: &str, source: &str, data: &str) -> Vec<u8> {
        format!(
            r#"{{"operationType":"{op}","dataSource":"{source}","eventId":"82AA","ns":{{"db":"d","coll":"c"}},"documentKey":{{"_id":{{"$oid":"65f0a1b2c3d4e5f601234567"}}}},"clusterTime":{{"$timestamp":{{"t":1,"i":1}}}},"data":{data}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn each_operation_becomes_what_the_table_needs() {
        let insert = MirrorChange::parse(&line(
            "insert",
            "fullDocument",
            r#"{"_id":{"$oid":"65f0a1b2c3d4e5f601234567"},"n":{"$numberLong":"5"}}"#,
        ))
        .expect("parses");
        assert_eq!(insert.key, "65f0a1b2c3d4e5f601234567");
        assert_eq!(insert.event_id, "82AA");
        match insert.kind {
            ChangeKind::Upsert(doc) => assert_eq!(doc.get("n"), Some(&Bson::Int64(5))),
            other => panic!("{other:?}"),
        }
        let delete = MirrorChange::parse(&line(
            "delete",
            "fullDocumentBeforeChange",
            r#"{"_id":{"$oid":"65f0a1b2c3d4e5f601234567"}}"#,
        ))
        .expect("parses");
        assert_eq!(delete.kind, ChangeKind::Delete);
        let partial = MirrorChange::parse(&line(
            "update",
            "documentKey",
            r#"{"_id":{"$oid":"65f0a1b2c3d4e5f601234567"}}"#,
        ))
        .expect("parses");
        assert_eq!(partial.kind, ChangeKind::NoFullDocument);
    }

    #[test]
    fn what_is_not_a_change_record_is_refused() {
        assert!(MirrorChange::parse(b"{}").is_err());
        assert!(MirrorChange::parse(&line("drop", "documentKey", "{}")).is_err());
        assert!(MirrorChange::parse(&line("insert", "fullDocument", "[1]")).is_err());
    }
}
