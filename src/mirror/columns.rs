//! From documents to rows of a table whose columns only grow (README, "Mirror columns").
//! SKELETON: the API the mirror pass builds on; the body is issue #10's work in progress.

use serde::{Deserialize, Serialize};

/// A column's type, fixed when the column is first published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ColumnType {
    String,
    Int64,
    Double,
    Boolean,
    Timestamp,
    /// Any other BSON type, as relaxed Extended JSON text.
    Json,
}

/// One published column (besides `_id` and `__rowMarker__`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// The column's name in the table (mapped from the field name; unique).
    pub name: String,
    /// The document's top-level field it holds.
    pub field: String,
    pub kind: ColumnType,
}

/// A table's columns in publication order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableColumns {
    pub columns: Vec<Column>,
}

/// What a row does.
#[derive(Debug, Clone, PartialEq)]
pub enum RowChange {
    /// `__rowMarker__` 4: the whole document (its `_id` field is the key column).
    Upsert(bson::Document),
    /// `__rowMarker__` 2: the key alone.
    Delete,
}

/// One row of a data file.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorRow {
    /// The `_id` column ([`key_text`]).
    pub key: String,
    pub change: RowChange,
}

#[derive(Debug, thiserror::Error)]
pub enum ParquetWriteError {
    #[error("{0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("no column for field {0:?} (extend the columns first)")]
    MissingColumn(String),
}

impl TableColumns {
    /// Adds the columns `rows` need, never changing an existing one.
    pub fn extend_for(&mut self, rows: &[MirrorRow]) {
        let _ = rows;
    }
}

/// The key column's text for a document's `_id`.
pub fn key_text(id: &bson::Bson) -> String {
    match id {
        bson::Bson::ObjectId(oid) => oid.to_hex(),
        bson::Bson::String(text) => text.clone(),
        other => other.clone().into_canonical_extjson().to_string(),
    }
}

/// One data file's bytes.
pub fn write_parquet(
    columns: &TableColumns,
    rows: &[MirrorRow],
) -> Result<Vec<u8>, ParquetWriteError> {
    let _ = (columns, rows);
    Ok(Vec::new())
}
