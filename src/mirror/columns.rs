//! From documents to rows of a table whose columns only grow (README, "Mirror columns").
//!
//! A table's columns are fixed once published: Fabric stops a table whose column changes
//! type, so a field that later holds another type gets a sibling column of that type
//! instead (`price`, then `price__string`), and no value is lost. Field names Fabric and
//! Delta refuse are mapped to names they accept, deterministically, and every name is
//! unique case-insensitively (SQL and Spark compare column names without case).
//!
//! [`write_parquet`] turns rows into one data file: `_id`, the columns in order, then
//! `__rowMarker__` last, as the landing-zone format requires. The same columns and rows
//! always give the same bytes, so a step's file can be rebuilt from its claim.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bson::Bson;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::compact::parquet::ROW_GROUP_BYTES;
use crate::domain::extjson::{write_extjson, Encoding};

/// The key column, first in every data file (`_metadata.json` names it).
pub const KEY_COLUMN: &str = "_id";
/// The row marker column, last in every data file (the landing-zone format requires it).
pub const ROW_MARKER_COLUMN: &str = "__rowMarker__";
/// `__rowMarker__` of an upsert: insert the row, or replace the row of its key.
pub const UPSERT_MARKER: i32 = 4;
/// `__rowMarker__` of a delete: remove the row of its key.
pub const DELETE_MARKER: i32 = 2;
/// Longest column name, in characters: SQL Server's (and Fabric's SQL endpoint's)
/// identifier limit.
pub const MAX_NAME_CHARS: usize = 128;

/// Rows per Arrow batch handed to the writer: amortises the per-batch work.
const BATCH_ROWS: usize = 8192;
/// A row group ends at this many rows, or at [`ROW_GROUP_BYTES`] of encoded data (the
/// writer's own estimate: deterministic, unlike a measure of allocated memory).
const ROW_GROUP_ROWS: usize = 100_000;
/// `_` and 8 hex digits of a hash, appended to a name that had to be changed.
const HASH_SUFFIX_CHARS: usize = 9;

/// A column's type, fixed when the column is first published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl ColumnType {
    pub const ALL: [ColumnType; 6] = [
        ColumnType::String,
        ColumnType::Int64,
        ColumnType::Double,
        ColumnType::Boolean,
        ColumnType::Timestamp,
        ColumnType::Json,
    ];

    /// The column type a value goes to; `None` for null, which is no value (never a
    /// column of its own).
    pub fn of(value: &Bson) -> Option<ColumnType> {
        Some(match value {
            Bson::Null => return None,
            Bson::String(_) => ColumnType::String,
            Bson::Int32(_) | Bson::Int64(_) => ColumnType::Int64,
            Bson::Double(_) => ColumnType::Double,
            Bson::Boolean(_) => ColumnType::Boolean,
            Bson::DateTime(_) => ColumnType::Timestamp,
            _ => ColumnType::Json,
        })
    }

    /// The type's name in a sibling column's suffix (`price__string`).
    pub fn suffix_name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int64 => "int64",
            ColumnType::Double => "double",
            ColumnType::Boolean => "boolean",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Json => "json",
        }
    }

    fn data_type(self) -> DataType {
        match self {
            ColumnType::String | ColumnType::Json => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        }
    }
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

impl RowChange {
    /// The row's `__rowMarker__`.
    pub fn marker(&self) -> i32 {
        match self {
            RowChange::Upsert(_) => UPSERT_MARKER,
            RowChange::Delete => DELETE_MARKER,
        }
    }
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
    /// Adds the columns `rows` need, never changing an existing one: rows in order, each
    /// document's fields in order, so the same rows always add the same columns.
    pub fn extend_for(&mut self, rows: &[MirrorRow]) {
        let mut names = Names::of(self);
        // Per field: its first column's name and the types it has columns for.
        let mut fields: HashMap<String, (String, Vec<ColumnType>)> = HashMap::new();
        for column in &self.columns {
            fields
                .entry(column.field.clone())
                .or_insert_with(|| (column.name.clone(), Vec::new()))
                .1
                .push(column.kind);
        }
        for (field, kind) in rows.iter().flat_map(|row| typed_fields(&row.change)) {
            let name = match fields.get_mut(field) {
                Some((_, kinds)) if kinds.contains(&kind) => continue,
                Some((first, kinds)) => {
                    kinds.push(kind);
                    names.for_sibling(first, field, kind)
                }
                None => {
                    let name = names.for_field(field);
                    fields.insert(field.to_owned(), (name.clone(), vec![kind]));
                    name
                }
            };
            self.columns.push(Column {
                name,
                field: field.to_owned(),
                kind,
            });
        }
    }

    /// The column that holds `field`'s values of type `kind`, if there is one.
    pub fn column_for(&self, field: &str, kind: ColumnType) -> Option<&Column> {
        self.columns
            .iter()
            .find(|column| column.field == field && column.kind == kind)
    }

    /// A data file's Arrow schema: `_id`, the columns in order, `__rowMarker__` last.
    pub fn schema(&self) -> SchemaRef {
        let mut fields = Vec::with_capacity(self.columns.len() + 2);
        fields.push(Field::new(KEY_COLUMN, DataType::Utf8, false));
        fields.extend(
            self.columns
                .iter()
                .map(|column| Field::new(&column.name, column.kind.data_type(), true)),
        );
        fields.push(Field::new(ROW_MARKER_COLUMN, DataType::Int32, false));
        Arc::new(Schema::new(fields))
    }
}

/// A document's fields that become column values: not `_id` (the key column), not null.
fn typed_fields(change: &RowChange) -> impl Iterator<Item = (&str, ColumnType)> + '_ {
    let document = match change {
        RowChange::Upsert(document) => Some(document),
        RowChange::Delete => None,
    };
    document
        .into_iter()
        .flat_map(|document| document.iter())
        .filter(|(field, _)| field.as_str() != KEY_COLUMN)
        .filter_map(|(field, value)| Some((field.as_str(), ColumnType::of(value)?)))
}

/// The names a table already uses, lower-cased (unique case-insensitively), with the
/// two columns every file has.
struct Names(HashSet<String>);

impl Names {
    fn of(columns: &TableColumns) -> Names {
        let reserved = [KEY_COLUMN, ROW_MARKER_COLUMN];
        let used = columns.columns.iter().map(|column| column.name.as_str());
        Names(
            reserved
                .into_iter()
                .chain(used)
                .map(str::to_ascii_lowercase)
                .collect(),
        )
    }

    /// A field's first column: its name mapped, with a hash of the field when it had to
    /// change, could be mistaken for another column, or is already taken.
    fn for_field(&mut self, field: &str) -> String {
        let mut changed = false;
        let wanted: String = field
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    changed = true;
                    '_'
                }
            })
            .collect();
        let lower = wanted.to_ascii_lowercase();
        let force_hash = changed
            || wanted.is_empty()
            || wanted.starts_with(|c: char| c.is_ascii_digit())
            || wanted.len() > MAX_NAME_CHARS
            || ColumnType::ALL
                .iter()
                .any(|kind| lower.ends_with(&format!("__{}", kind.suffix_name())));
        self.place(wanted, force_hash, field.as_bytes())
    }

    /// A sibling column: the field's first column's name and `__<type>`.
    fn for_sibling(&mut self, first: &str, field: &str, kind: ColumnType) -> String {
        let suffix = format!("__{}", kind.suffix_name());
        let hashed = format!("{field}{suffix}");
        self.place(format!("{first}{suffix}"), false, hashed.as_bytes())
    }

    /// `wanted` if it may be used as it is, else `wanted` (cut to fit) with `_` and 8 hex
    /// digits of SHA-256 of `source` (of `source` and a counter, in the unlikely case that
    /// name is taken too).
    fn place(&mut self, wanted: String, force_hash: bool, source: &[u8]) -> String {
        let fits = wanted.len() <= MAX_NAME_CHARS;
        if !force_hash && fits && self.0.insert(wanted.to_ascii_lowercase()) {
            return wanted;
        }
        let stem = &wanted[..wanted.len().min(MAX_NAME_CHARS - HASH_SUFFIX_CHARS)];
        for attempt in 0u64.. {
            let mut hasher = Sha256::new();
            hasher.update(source);
            if attempt > 0 {
                hasher.update(attempt.to_be_bytes());
            }
            let digest = hasher.finalize();
            let hash: String = digest[..4]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            let name = format!("{stem}_{hash}");
            if self.0.insert(name.to_ascii_lowercase()) {
                return name;
            }
        }
        unreachable!("a name is found before the counter runs out")
    }
}

/// The key column's text for a document's `_id`: an ObjectId as its 24 hex digits, a
/// string as it is, anything else as canonical Extended JSON (the project's writer:
/// exact for every value, so two different `_id`s never share a text).
pub fn key_text(id: &Bson) -> String {
    match id {
        Bson::ObjectId(oid) => oid.to_hex(),
        Bson::String(text) => text.clone(),
        other => crate::domain::extjson::to_extjson_string(other, Encoding::Canonical),
    }
}

/// One data file's bytes: zstd, row groups of at most [`ROW_GROUP_ROWS`] rows or
/// [`ROW_GROUP_BYTES`], no time or other varying metadata, so the same input always gives
/// the same bytes. Every non-null field of an upsert needs its column
/// ([`TableColumns::extend_for`]); a field without one is [`ParquetWriteError::MissingColumn`].
pub fn write_parquet(
    columns: &TableColumns,
    rows: &[MirrorRow],
) -> Result<Vec<u8>, ParquetWriteError> {
    let schema = columns.schema();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties(columns)))?;
    let index: HashMap<(&str, ColumnType), usize> = columns
        .columns
        .iter()
        .enumerate()
        .map(|(at, column)| ((column.field.as_str(), column.kind), at))
        .collect();
    for chunk in rows.chunks(BATCH_ROWS) {
        let mut batch = Batch::new(columns, chunk.len());
        for row in chunk {
            batch.push(row, &index)?;
        }
        writer.write(&batch.finish(schema.clone())?)?;
    }
    Ok(writer.into_inner()?)
}

fn properties(columns: &TableColumns) -> WriterProperties {
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES));
    // JSON text: min/max statistics help no query and cost a comparison per value.
    for column in &columns.columns {
        if column.kind == ColumnType::Json {
            properties = properties.set_column_statistics_enabled(
                ColumnPath::from(column.name.as_str()),
                EnabledStatistics::None,
            );
        }
    }
    properties.build()
}

/// One column's values being gathered.
enum Values {
    String(StringBuilder),
    Json(StringBuilder),
    Int64(Int64Builder),
    Double(Float64Builder),
    Boolean(BooleanBuilder),
    Timestamp(TimestampMillisecondBuilder),
}

impl Values {
    fn new(kind: ColumnType, rows: usize) -> Values {
        match kind {
            ColumnType::String => Values::String(StringBuilder::with_capacity(rows, 0)),
            ColumnType::Json => Values::Json(StringBuilder::with_capacity(rows, 0)),
            ColumnType::Int64 => Values::Int64(Int64Builder::with_capacity(rows)),
            ColumnType::Double => Values::Double(Float64Builder::with_capacity(rows)),
            ColumnType::Boolean => Values::Boolean(BooleanBuilder::with_capacity(rows)),
            ColumnType::Timestamp => Values::Timestamp(
                TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
        }
    }

    /// Appends `value` (of this column's type: the row's slots are filled by type), or
    /// null. `json` is a reused buffer for Extended JSON text.
    fn push(&mut self, value: Option<&Bson>, json: &mut Vec<u8>) {
        match (self, value) {
            (Values::String(values), Some(Bson::String(text))) => values.append_value(text),
            (Values::Json(values), Some(value)) => {
                json.clear();
                write_extjson(json, value, Encoding::Relaxed);
                values.append_value(String::from_utf8_lossy(json));
            }
            (Values::Int64(values), Some(Bson::Int32(number))) => {
                values.append_value(i64::from(*number))
            }
            (Values::Int64(values), Some(Bson::Int64(number))) => values.append_value(*number),
            (Values::Double(values), Some(Bson::Double(number))) => values.append_value(*number),
            (Values::Boolean(values), Some(Bson::Boolean(flag))) => values.append_value(*flag),
            (Values::Timestamp(values), Some(Bson::DateTime(date))) => {
                values.append_value(date.timestamp_millis())
            }
            (Values::String(values) | Values::Json(values), _) => values.append_null(),
            (Values::Int64(values), _) => values.append_null(),
            (Values::Double(values), _) => values.append_null(),
            (Values::Boolean(values), _) => values.append_null(),
            (Values::Timestamp(values), _) => values.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Values::String(mut values) | Values::Json(mut values) => Arc::new(values.finish()),
            Values::Int64(mut values) => Arc::new(values.finish()),
            Values::Double(mut values) => Arc::new(values.finish()),
            Values::Boolean(mut values) => Arc::new(values.finish()),
            Values::Timestamp(mut values) => Arc::new(values.finish()),
        }
    }
}

/// The rows of one Arrow batch being gathered, one builder per column.
struct Batch<'r> {
    keys: StringBuilder,
    values: Vec<Values>,
    markers: Int32Builder,
    /// This row's value per column (reused from row to row).
    slots: Vec<Option<&'r Bson>>,
    json: Vec<u8>,
}

impl<'r> Batch<'r> {
    fn new(columns: &TableColumns, rows: usize) -> Batch<'r> {
        Batch {
            keys: StringBuilder::with_capacity(rows, 0),
            values: columns
                .columns
                .iter()
                .map(|column| Values::new(column.kind, rows))
                .collect(),
            markers: Int32Builder::with_capacity(rows),
            slots: vec![None; columns.columns.len()],
            json: Vec::new(),
        }
    }

    fn push(
        &mut self,
        row: &'r MirrorRow,
        index: &HashMap<(&str, ColumnType), usize>,
    ) -> Result<(), ParquetWriteError> {
        self.slots.iter_mut().for_each(|slot| *slot = None);
        if let RowChange::Upsert(document) = &row.change {
            for (field, value) in document {
                if field == KEY_COLUMN {
                    continue;
                }
                let Some(kind) = ColumnType::of(value) else {
                    continue;
                };
                let at = index
                    .get(&(field.as_str(), kind))
                    .ok_or_else(|| ParquetWriteError::MissingColumn(field.clone()))?;
                self.slots[*at] = Some(value);
            }
        }
        self.keys.append_value(&row.key);
        for (values, slot) in self.values.iter_mut().zip(&self.slots) {
            values.push(*slot, &mut self.json);
        }
        self.markers.append_value(row.change.marker());
        Ok(())
    }

    fn finish(mut self, schema: SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.values.len() + 2);
        arrays.push(Arc::new(self.keys.finish()));
        arrays.extend(self.values.into_iter().map(Values::finish));
        arrays.push(Arc::new(self.markers.finish()));
        RecordBatch::try_new(schema, arrays)
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
    use arrow_array::Array;
    use bson::oid::ObjectId;
    use bson::spec::BinarySubtype;
    use bson::{doc, Binary, DateTime, Decimal128, Document, Regex, Timestamp};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use proptest::prelude::*;

    use super::*;

    fn upsert(key: &str, document: Document) -> MirrorRow {
        MirrorRow {
            key: key.to_owned(),
            change: RowChange::Upsert(document),
        }
    }

    fn delete(key: &str) -> MirrorRow {
        MirrorRow {
            key: key.to_owned(),
            change: RowChange::Delete,
        }
    }

    fn columns_for(rows: &[MirrorRow]) -> TableColumns {
        let mut columns = TableColumns::default();
        columns.extend_for(rows);
        columns
    }

    /// (name, field, kind) of every column.
    fn described(columns: &TableColumns) -> Vec<(String, String, ColumnType)> {
        columns
            .columns
            .iter()
            .map(|column| (column.name.clone(), column.field.clone(), column.kind))
            .collect()
    }

    fn hash8(text: &str) -> String {
        Sha256::digest(text.as_bytes())[..4]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// The table's rules hold: names of at most 128 ASCII letters, digits and `_`, unique
    /// case-insensitively (with `_id` and `__rowMarker__`), one column per (field, type).
    fn assert_well_formed(columns: &TableColumns) {
        let mut seen: HashSet<String> = [KEY_COLUMN, ROW_MARKER_COLUMN]
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .collect();
        let mut typed = HashSet::new();
        for column in &columns.columns {
            assert!(column.name.len() <= MAX_NAME_CHARS, "{}", column.name);
            assert!(
                !column.name.is_empty()
                    && column
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{:?}",
                column.name
            );
            assert!(
                seen.insert(column.name.to_ascii_lowercase()),
                "{} is taken",
                column.name
            );
            assert!(typed.insert((column.field.clone(), column.kind)));
        }
    }

    #[test]
    fn every_bson_type_goes_to_its_column_type() {
        let json = ColumnType::Json;
        let cases = [
            (Bson::String("s".into()), Some(ColumnType::String)),
            (Bson::Int32(1), Some(ColumnType::Int64)),
            (Bson::Int64(1), Some(ColumnType::Int64)),
            (Bson::Double(1.5), Some(ColumnType::Double)),
            (Bson::Boolean(true), Some(ColumnType::Boolean)),
            (
                Bson::DateTime(DateTime::from_millis(-1)),
                Some(ColumnType::Timestamp),
            ),
            (Bson::Null, None),
            (Bson::ObjectId(ObjectId::new()), Some(json)),
            (
                Bson::Decimal128(Decimal128::from_bytes([0; 16])),
                Some(json),
            ),
            (Bson::Document(doc! {"a": 1}), Some(json)),
            (Bson::Array(vec![Bson::Int32(1)]), Some(json)),
            (
                Bson::Binary(Binary {
                    subtype: BinarySubtype::Generic,
                    bytes: vec![1, 2],
                }),
                Some(json),
            ),
            (
                Bson::Timestamp(Timestamp {
                    time: 1,
                    increment: 2,
                }),
                Some(json),
            ),
            (
                Bson::RegularExpression(Regex {
                    pattern: "a.*".try_into().expect("no NUL"),
                    options: "i".try_into().expect("no NUL"),
                }),
                Some(json),
            ),
            (Bson::JavaScriptCode("f()".into()), Some(json)),
            (Bson::Symbol("s".into()), Some(json)),
            (Bson::Undefined, Some(json)),
            (Bson::MinKey, Some(json)),
            (Bson::MaxKey, Some(json)),
        ];
        for (value, expected) in cases {
            assert_eq!(ColumnType::of(&value), expected, "{value:?}");
        }
    }

    #[test]
    fn columns_follow_rows_then_fields_skipping_id_and_nulls() {
        let rows = [
            upsert(
                "1",
                doc! {"_id": 1, "title": "a", "gone": Bson::Null, "year": 1982},
            ),
            delete("2"),
            upsert(
                "3",
                doc! {"_id": 3, "rating": 7.5, "title": "b", "gone": Bson::Null},
            ),
        ];
        let columns = columns_for(&rows);
        let named = |name: &str, kind| (name.to_owned(), name.to_owned(), kind);
        assert_eq!(
            described(&columns),
            [
                named("title", ColumnType::String),
                named("year", ColumnType::Int64),
                named("rating", ColumnType::Double),
            ]
        );
        assert_eq!(columns, columns_for(&rows), "deterministic");
    }

    #[test]
    fn a_type_change_adds_a_sibling_and_never_changes_a_column() {
        let mut columns = columns_for(&[upsert("1", doc! {"price": 10, "n": 1})]);
        let before = columns.clone();
        columns.extend_for(&[
            upsert("1", doc! {"price": "10 EUR", "n": 2_i64}),
            upsert("2", doc! {"price": 9.5, "n": true}),
            upsert("3", doc! {"price": DateTime::from_millis(0), "n": [1]}),
            upsert("4", doc! {"price": {"a": 1}, "n": "x"}),
        ]);
        assert_eq!(
            columns.columns[..2],
            before.columns[..],
            "existing columns kept"
        );
        let names: Vec<&str> = columns.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "price",
                "n",
                "price__string",
                "price__double",
                "n__boolean",
                "price__timestamp",
                "n__json",
                "price__json",
                "n__string",
            ]
        );
        assert_eq!(
            columns
                .column_for("price", ColumnType::Double)
                .map(|c| c.name.as_str()),
            Some("price__double")
        );
        // A later extension with types already seen adds nothing.
        let settled = columns.clone();
        columns.extend_for(&[upsert("5", doc! {"price": 1_i64, "n": false})]);
        assert_eq!(columns, settled);
        assert_well_formed(&columns);
    }

    #[test]
    fn names_fabric_refuses_are_mapped_with_a_hash_of_the_field() {
        let long = "x".repeat(200);
        let fields = [
            ("Title_2", "Title_2".to_owned()),
            ("a b", format!("a_b_{}", hash8("a b"))),
            ("prix€", format!("prix__{}", hash8("prix€"))),
            ("a.b;c=d", format!("a_b_c_d_{}", hash8("a.b;c=d"))),
            ("", format!("_{}", hash8(""))),
            ("1st", format!("1st_{}", hash8("1st"))),
            ("_ID", format!("_ID_{}", hash8("_ID"))),
            (
                "__rowmarker__",
                format!("__rowmarker___{}", hash8("__rowmarker__")),
            ),
            (
                "cost__String",
                format!("cost__String_{}", hash8("cost__String")),
            ),
            ("cost__json", format!("cost__json_{}", hash8("cost__json"))),
            (long.as_str(), format!("{}_{}", &long[..119], hash8(&long))),
        ];
        assert_eq!(fields[1].1, "a_b_c8687a08", "the README's example");
        let mut document = Document::new();
        for (field, _) in &fields {
            document.insert(*field, 1);
        }
        let columns = columns_for(&[upsert("k", document)]);
        let names: Vec<String> = columns.columns.iter().map(|c| c.name.clone()).collect();
        let expected: Vec<String> = fields.iter().map(|(_, name)| name.clone()).collect();
        assert_eq!(names, expected);
        assert_eq!(columns.columns[10].name.len(), MAX_NAME_CHARS);
        assert_well_formed(&columns);
    }

    #[test]
    fn case_insensitive_collisions_get_the_hash() {
        let columns = columns_for(&[
            upsert("1", doc! {"price": 1, "a_b": 1}),
            upsert("2", doc! {"Price": 1, "a b": 1, "PRICE": "x", "price": "y"}),
            upsert("3", doc! {"Price": "z"}),
        ]);
        let named = |name: String, field: &str, kind| (name, field.to_owned(), kind);
        let price_2 = format!("Price_{}", hash8("Price"));
        assert_eq!(
            described(&columns),
            [
                named("price".into(), "price", ColumnType::Int64),
                named("a_b".into(), "a_b", ColumnType::Int64),
                named(price_2.clone(), "Price", ColumnType::Int64),
                named(format!("a_b_{}", hash8("a b")), "a b", ColumnType::Int64),
                named(
                    format!("PRICE_{}", hash8("PRICE")),
                    "PRICE",
                    ColumnType::String
                ),
                named("price__string".into(), "price", ColumnType::String),
                named(format!("{price_2}__string"), "Price", ColumnType::String),
            ]
        );
        assert_well_formed(&columns);
    }

    #[test]
    fn a_sibling_too_long_is_cut_and_gets_the_hash() {
        let full = "y".repeat(MAX_NAME_CHARS);
        let columns = columns_for(&[
            upsert("1", doc! {"v__string_": 1, "v": 1, &full: 1}),
            upsert("2", doc! {"v": "s", &full: "s"}),
        ]);
        assert_eq!(
            columns.columns[0].name, "v__string_",
            "no sibling suffix at its end"
        );
        assert_eq!(columns.columns[2].name, full, "128 characters are kept");
        let long_sibling = &columns.columns[4];
        let source = format!("{full}__string");
        assert_eq!(
            long_sibling.name,
            format!("{}_{}", &source[..119], hash8(&source))
        );
        assert_eq!(columns.columns[3].name, "v__string");
        assert_well_formed(&columns);
    }

    #[test]
    fn the_columns_keep_their_json_shape() {
        let columns = columns_for(&[upsert("1", doc! {"a b": 1, "t": DateTime::from_millis(0)})]);
        let text = serde_json::to_string(&columns).expect("serializes");
        let expected = format!(
            r#"{{"columns":[{{"name":"a_b_{}","field":"a b","kind":"int64"}},{{"name":"t","field":"t","kind":"timestamp"}}]}}"#,
            hash8("a b")
        );
        assert_eq!(text, expected);
        let back: TableColumns = serde_json::from_str(&text).expect("reads back");
        assert_eq!(back, columns);
        for kind in ColumnType::ALL {
            let text = serde_json::to_string(&kind).expect("serializes");
            assert_eq!(text, format!("\"{}\"", kind.suffix_name()));
        }
    }

    fn field_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-cA-C]{1,3}",
            "[a-c _.é0-9]{0,4}",
            "[a-c]{1,2}__(string|int64|json)",
            Just("_id".to_owned()),
            Just("__rowMarker__".to_owned()),
            "[a-z]{126,131}",
        ]
    }

    fn value() -> impl Strategy<Value = Bson> {
        prop_oneof![
            Just(Bson::Null),
            any::<i32>().prop_map(Bson::Int32),
            any::<i64>().prop_map(Bson::Int64),
            any::<f64>().prop_map(Bson::Double),
            any::<bool>().prop_map(Bson::Boolean),
            "[a-z]{0,3}".prop_map(Bson::String),
            any::<i64>().prop_map(|ms| Bson::DateTime(DateTime::from_millis(ms))),
            any::<[u8; 12]>().prop_map(|b| Bson::ObjectId(ObjectId::from_bytes(b))),
        ]
    }

    fn rows() -> impl Strategy<Value = Vec<MirrorRow>> {
        let document = prop::collection::vec((field_name(), value()), 0..6)
            .prop_map(|fields| fields.into_iter().collect::<Document>());
        prop::collection::vec(
            prop_oneof![
                1 => Just(RowChange::Delete),
                4 => document.prop_map(RowChange::Upsert),
            ],
            0..8,
        )
        .prop_map(|changes| {
            changes
                .into_iter()
                .enumerate()
                .map(|(n, change)| MirrorRow {
                    key: n.to_string(),
                    change,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn any_rows_give_well_formed_growing_columns_and_a_file(
            first in rows(),
            second in rows(),
        ) {
            let mut columns = columns_for(&first);
            assert_well_formed(&columns);
            let before = columns.clone();
            columns.extend_for(&second);
            assert_well_formed(&columns);
            prop_assert_eq!(&columns.columns[..before.columns.len()], &before.columns[..]);
            for row in first.iter().chain(&second) {
                for (field, kind) in typed_fields(&row.change) {
                    prop_assert!(columns.column_for(field, kind).is_some());
                }
            }
            let all: Vec<MirrorRow> = first.iter().chain(&second).cloned().collect();
            let bytes = write_parquet(&columns, &all).expect("every field has its column");
            prop_assert_eq!(&bytes, &write_parquet(&columns, &all).expect("again"));
            prop_assert_eq!(read(&bytes).0.len(), all.len());
        }
    }

    /// A row read back: (column name, cell as text or `None`) in column order.
    type ReadRow = Vec<(String, Option<String>)>;

    /// Every row of a file, and its number of row groups.
    fn read(bytes: &[u8]) -> (Vec<ReadRow>, usize) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes.to_vec()))
            .expect("a Parquet file");
        let groups = builder.metadata().num_row_groups();
        let mut rows = Vec::new();
        for batch in builder.build().expect("reader") {
            let batch = batch.expect("a batch");
            for index in 0..batch.num_rows() {
                let row = batch
                    .schema()
                    .fields()
                    .iter()
                    .zip(batch.columns())
                    .map(|(field, column)| (field.name().clone(), cell(column, index)))
                    .collect();
                rows.push(row);
            }
        }
        (rows, groups)
    }

    fn cell(column: &ArrayRef, index: usize) -> Option<String> {
        if column.is_null(index) {
            return None;
        }
        Some(match column.data_type() {
            DataType::Utf8 => column.as_string::<i32>().value(index).to_owned(),
            DataType::Int64 => column.as_primitive::<Int64Type>().value(index).to_string(),
            DataType::Int32 => column.as_primitive::<Int32Type>().value(index).to_string(),
            DataType::Float64 => format!("{:?}", column.as_primitive::<Float64Type>().value(index)),
            DataType::Boolean => column.as_boolean().value(index).to_string(),
            _ => column
                .as_primitive::<TimestampMillisecondType>()
                .value(index)
                .to_string(),
        })
    }

    #[test]
    fn rows_hold_values_by_type_nulls_and_markers() {
        let oid = ObjectId::parse_str("573a1390f29313caabcd42e8").expect("hex");
        let rows = [
            upsert(
                "k1",
                doc! {"_id": oid, "n": 5, "t": DateTime::from_millis(-5), "o": oid, "f": false},
            ),
            upsert(
                "k2",
                doc! {"n": "five", "x": Bson::Null, "f": true, "d": {"a": [1_i64, 2.5]}},
            ),
            delete("k3"),
        ];
        let columns = columns_for(&rows);
        let (read, groups) = read(&write_parquet(&columns, &rows).expect("written"));
        assert_eq!(groups, 1);
        let text = |value: &str| Some(value.to_owned());
        let names = ["_id", "n", "t", "o", "f", "n__string", "d", "__rowMarker__"];
        let row = |cells: [Option<String>; 8]| {
            names
                .iter()
                .map(|name| name.to_string())
                .zip(cells)
                .collect::<Vec<_>>()
        };
        let oid_json = text(r#"{"$oid":"573a1390f29313caabcd42e8"}"#);
        let d_json = text(r#"{"a":[1,2.5]}"#);
        assert_eq!(
            read,
            [
                row([
                    text("k1"),
                    text("5"),
                    text("-5"),
                    oid_json,
                    text("false"),
                    None,
                    None,
                    text("4")
                ]),
                row([
                    text("k2"),
                    None,
                    None,
                    None,
                    text("true"),
                    text("five"),
                    d_json,
                    text("4")
                ]),
                row([text("k3"), None, None, None, None, None, None, text("2")]),
            ]
        );
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let rows: Vec<MirrorRow> = (0..20_000)
            .map(|n| {
                upsert(
                    &n.to_string(),
                    doc! {"n": n, "s": format!("v{}", n % 7), "j": [n]},
                )
            })
            .collect();
        let columns = columns_for(&rows);
        let first = write_parquet(&columns, &rows).expect("written");
        assert_eq!(first, write_parquet(&columns, &rows).expect("again"));
        assert_eq!(read(&first).0.len(), rows.len());
    }

    #[test]
    fn row_groups_end_at_their_row_count() {
        let rows: Vec<MirrorRow> = (0..ROW_GROUP_ROWS + 1)
            .map(|n| upsert(&n.to_string(), doc! {"n": n as i64}))
            .collect();
        let columns = columns_for(&rows);
        let (read, groups) = read(&write_parquet(&columns, &rows).expect("written"));
        assert_eq!(groups, 2);
        assert_eq!(read.len(), rows.len());
        assert_eq!(
            read[ROW_GROUP_ROWS][1],
            ("n".to_owned(), Some(ROW_GROUP_ROWS.to_string()))
        );
    }

    #[test]
    fn a_field_without_its_column_is_refused() {
        let columns = columns_for(&[upsert("1", doc! {"n": 1})]);
        for document in [doc! {"m": 1}, doc! {"n": "one"}] {
            let error = write_parquet(&columns, &[upsert("2", document)]).expect_err("no column");
            assert!(
                matches!(error, ParquetWriteError::MissingColumn(_)),
                "{error}"
            );
        }
        let fine = [upsert("2", doc! {"n": Bson::Null, "_id": "x"}), delete("3")];
        assert!(write_parquet(&columns, &fine).is_ok());
    }

    #[test]
    fn key_text_is_hex_text_or_canonical_extended_json() {
        let oid = ObjectId::parse_str("573a1390f29313caabcd42e8").expect("hex");
        assert_eq!(key_text(&Bson::ObjectId(oid)), "573a1390f29313caabcd42e8");
        assert_eq!(key_text(&Bson::String("a\"b".into())), "a\"b");
        assert_eq!(key_text(&Bson::Int32(42)), r#"{"$numberInt":"42"}"#);
        assert_eq!(key_text(&Bson::Int64(42)), r#"{"$numberLong":"42"}"#);
        assert_eq!(
            key_text(&Bson::Double(5e-324)),
            r#"{"$numberDouble":"5e-324"}"#
        );
        assert_ne!(key_text(&Bson::Double(0.0)), key_text(&Bson::Double(-0.0)));
        assert_eq!(
            key_text(&Bson::Document(doc! {"b": 1, "a": oid})),
            r#"{"b":{"$numberInt":"1"},"a":{"$oid":"573a1390f29313caabcd42e8"}}"#,
            "field order is kept: {{b,a}} and {{a,b}} are different _ids"
        );
    }
}
