//! A compacted part as Parquet: the same records as its JSON-lines file, in the same order,
//! one row each, in the schema the README gives ("Compacted Parquet schema").
//!
//! Each record line is parsed with its documents kept as raw text (`&RawValue`): the
//! `documentKey`, `updateDescription` and `data` columns hold the line's own Extended JSON,
//! byte for byte, and no document is ever built as a tree. Memory stays bounded whatever
//! the part's size: rows are gathered into small Arrow batches, and the writer's row group
//! is written out once it holds [`ROW_GROUP_BYTES`].
//!
//! Synchronous: the compactor runs it on a blocking thread.

use std::borrow::Cow;
use std::fs::File;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Rows gathered before they go to the writer as one Arrow batch: enough to amortise the
/// per-batch work, few enough that a batch of small records stays small.
const BATCH_ROWS: usize = 8192;
/// Record bytes gathered before a batch goes to the writer, whatever its row count: a
/// batch of 3 KB records is about 8 MiB (plus one record, which can be large).
const BATCH_BYTES: usize = 8 << 20;
/// The writer's buffered row group (encoded pages and encoder state, `memory_size`) is
/// written out past this. The writer holds a row group about twice while closing it, so
/// this is half its peak memory: 32 MiB measured 89 MiB peak RSS for a part of 1,000,000
/// records of 3 KB (64 MiB: 134 MiB), inside the compaction budget of 256 MB beside the
/// sort. A row group is then about 100 MB of records, a size Spark and Synapse split
/// files on well.
pub const ROW_GROUP_BYTES: usize = 32 << 20;

/// Columns whose values repeat (a handful per part): dictionary-encoded. The others are
/// unique per row (`eventId`, documents), where a dictionary only costs time.
const DICTIONARY_COLUMNS: [&str; 4] = ["operationType", "dataSource", "db", "coll"];
/// Columns of JSON text: min/max statistics of them help no query and cost a comparison
/// of every document, so they have none.
const DOCUMENT_COLUMNS: [&str; 3] = ["documentKey", "updateDescription", "data"];

/// Why a part could not be written. A malformed record names its line: the part's JSONL
/// file holds the same records in the same order, so it is that file's line number.
/// Messages never quote a document.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    #[error("line {line} is not a lake record: {source}")]
    NotARecord {
        line: u64,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: `{field}` is not {expected}")]
    Field {
        line: u64,
        field: &'static str,
        expected: &'static str,
    },
    #[error("building a batch: {0}")]
    Arrow(#[from] ArrowError),
    #[error("writing the Parquet file: {0}")]
    Write(#[from] parquet::errors::ParquetError),
}

/// Writes one part file: [`create`](ParquetPartWriter::create), a
/// [`push`](ParquetPartWriter::push) per record in order, then
/// [`finish`](ParquetPartWriter::finish).
pub struct ParquetPartWriter {
    writer: ArrowWriter<File>,
    batch: Columns,
    rows: u64,
    /// [`ROW_GROUP_BYTES`], smaller in tests.
    row_group_bytes: usize,
}

impl ParquetPartWriter {
    /// Starts a part file (already created, empty) on local disk.
    pub fn create(file: File) -> Result<ParquetPartWriter, ParquetError> {
        ParquetPartWriter::with_row_group_bytes(file, ROW_GROUP_BYTES)
    }

    fn with_row_group_bytes(
        file: File,
        row_group_bytes: usize,
    ) -> Result<ParquetPartWriter, ParquetError> {
        let writer = ArrowWriter::try_new(file, schema(), Some(properties()))?;
        Ok(ParquetPartWriter {
            writer,
            batch: Columns::new(),
            rows: 0,
            row_group_bytes,
        })
    }

    /// Adds one record: the exact bytes of one change file (one JSON object, ends in `\n`).
    pub fn push(&mut self, line: &[u8]) -> Result<(), ParquetError> {
        let number = self.rows + 1;
        let row = Row::parse(line, number)?;
        self.batch.push(&row, line.len());
        self.rows = number;
        if self.batch.rows >= BATCH_ROWS || self.batch.bytes >= BATCH_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    /// Writes the footer; returns the number of rows. The file is flushed, not synced:
    /// the caller syncs (or uploads) it through its own handle.
    pub fn finish(mut self) -> Result<u64, ParquetError> {
        self.write_batch()?;
        self.writer.close()?;
        Ok(self.rows)
    }

    fn write_batch(&mut self) -> Result<(), ParquetError> {
        if self.batch.rows == 0 {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Columns::new()).finish()?;
        self.writer.write(&batch)?;
        // `memory_size` rather than `in_progress_size` (the encoded estimate): it also
        // counts what is buffered before encoding, so it is the bound on memory.
        if self.writer.memory_size() >= self.row_group_bytes {
            self.writer.flush()?;
        }
        Ok(())
    }
}

/// The part's Arrow schema, in the README's column order.
pub fn schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let utc_ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        text("eventId", false),
        text("operationType", false),
        text("dataSource", false),
        text("db", false),
        text("coll", false),
        Field::new("clusterTime", utc_ms.clone(), false),
        Field::new("clusterTimeIncrement", DataType::Int64, false),
        Field::new("wallTime", utc_ms, true),
        Field::new("txnNumber", DataType::Int64, true),
        text("documentKey", false),
        text("updateDescription", true),
        text("data", false),
    ]))
}

fn properties() -> WriterProperties {
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_dictionary_enabled(false);
    for column in DICTIONARY_COLUMNS {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(column), true);
    }
    for column in DOCUMENT_COLUMNS {
        properties = properties
            .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
    }
    properties.build()
}

/// One record line as `Record::to_json_line` writes it, borrowed from the line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(rename = "operationType", borrow)]
    operation_type: Cow<'a, str>,
    #[serde(rename = "dataSource", borrow)]
    data_source: Cow<'a, str>,
    #[serde(rename = "eventId", borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    ns: Ns<'a>,
    #[serde(rename = "documentKey", borrow)]
    document_key: &'a RawValue,
    #[serde(rename = "clusterTime", borrow)]
    cluster_time: &'a RawValue,
    #[serde(rename = "wallTime", borrow, default)]
    wall_time: Option<&'a RawValue>,
    #[serde(rename = "txnNumber", borrow, default)]
    txn_number: Option<&'a RawValue>,
    #[serde(rename = "updateDescription", borrow, default)]
    update_description: Option<&'a RawValue>,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ns<'a> {
    #[serde(borrow)]
    db: Cow<'a, str>,
    #[serde(borrow)]
    coll: Cow<'a, str>,
}

/// `{"$timestamp":{"t":…,"i":…}}`, the same in both encodings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimestampJson {
    #[serde(rename = "$timestamp")]
    timestamp: TimeAndIncrement,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeAndIncrement {
    t: u32,
    i: u32,
}

/// `{"$date": …}`: an ISO-8601 string (relaxed, years 1970-9999) or `{"$numberLong": …}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DateJson<'a> {
    #[serde(rename = "$date", borrow)]
    date: &'a RawValue,
}

/// A wrapped integer: canonical `$numberLong` (or `$numberInt`, should a sender use one).
#[derive(Deserialize)]
enum WrappedInteger<'a> {
    #[serde(rename = "$numberLong")]
    Long(&'a str),
    #[serde(rename = "$numberInt")]
    Int(&'a str),
}

/// One row's values, still borrowed from the line.
struct Row<'a> {
    line: Line<'a>,
    cluster_time_ms: i64,
    increment: i64,
    wall_time_ms: Option<i64>,
    txn_number: Option<i64>,
}

impl<'a> Row<'a> {
    fn parse(bytes: &'a [u8], number: u64) -> Result<Row<'a>, ParquetError> {
        let line: Line<'a> =
            serde_json::from_slice(bytes).map_err(|source| ParquetError::NotARecord {
                line: number,
                source,
            })?;
        let field = |field: &'static str, expected: &'static str| ParquetError::Field {
            line: number,
            field,
            expected,
        };
        let documents = [
            ("documentKey", Some(line.document_key)),
            ("updateDescription", line.update_description),
            ("data", Some(line.data)),
        ];
        for (name, raw) in documents {
            if raw.is_some_and(|raw| !raw.get().starts_with('{')) {
                return Err(field(name, "a document"));
            }
        }
        let cluster_time: TimestampJson = serde_json::from_str(line.cluster_time.get())
            .map_err(|_| field("clusterTime", "{\"$timestamp\":{\"t\":…,\"i\":…}}"))?;
        let wall_time_ms = line
            .wall_time
            .map(|raw| date_millis(raw).ok_or_else(|| field("wallTime", "a {\"$date\":…}")))
            .transpose()?;
        let txn_number = match line.txn_number {
            None => None,
            Some(raw) => integer(raw).ok_or_else(|| field("txnNumber", "an integer or null"))?,
        };
        Ok(Row {
            cluster_time_ms: i64::from(cluster_time.timestamp.t) * 1000,
            increment: i64::from(cluster_time.timestamp.i),
            wall_time_ms,
            txn_number,
            line,
        })
    }
}

/// Milliseconds since the epoch of an Extended JSON date, in either encoding.
fn date_millis(raw: &RawValue) -> Option<i64> {
    let date: DateJson = serde_json::from_str(raw.get()).ok()?;
    if let Ok(iso) = serde_json::from_str::<Cow<str>>(date.date.get()) {
        return bson::DateTime::parse_rfc3339_str(iso.as_ref())
            .ok()
            .map(|date| date.timestamp_millis());
    }
    match serde_json::from_str(date.date.get()).ok()? {
        WrappedInteger::Long(text) => text.parse().ok(),
        WrappedInteger::Int(_) => None,
    }
}

/// An integer in either encoding: a plain JSON integer (relaxed) or wrapped (canonical).
/// `Some(None)` for `null`; `None` when it is something else.
fn integer(raw: &RawValue) -> Option<Option<i64>> {
    let text = raw.get();
    if text == "null" {
        return Some(None);
    }
    if let Ok(number) = serde_json::from_str::<i64>(text) {
        return Some(Some(number));
    }
    match serde_json::from_str(text).ok()? {
        WrappedInteger::Long(digits) | WrappedInteger::Int(digits) => digits.parse().ok().map(Some),
    }
}

/// The batch being gathered, one builder per column.
struct Columns {
    event_id: StringBuilder,
    operation_type: StringBuilder,
    data_source: StringBuilder,
    db: StringBuilder,
    coll: StringBuilder,
    cluster_time: TimestampMillisecondBuilder,
    increment: Int64Builder,
    wall_time: TimestampMillisecondBuilder,
    txn_number: Int64Builder,
    document_key: StringBuilder,
    update_description: StringBuilder,
    data: StringBuilder,
    rows: usize,
    bytes: usize,
}

impl Columns {
    fn new() -> Columns {
        let utc = || TimestampMillisecondBuilder::new().with_timezone("UTC");
        Columns {
            event_id: StringBuilder::new(),
            operation_type: StringBuilder::new(),
            data_source: StringBuilder::new(),
            db: StringBuilder::new(),
            coll: StringBuilder::new(),
            cluster_time: utc(),
            increment: Int64Builder::new(),
            wall_time: utc(),
            txn_number: Int64Builder::new(),
            document_key: StringBuilder::new(),
            update_description: StringBuilder::new(),
            data: StringBuilder::new(),
            rows: 0,
            bytes: 0,
        }
    }

    fn push(&mut self, row: &Row<'_>, bytes: usize) {
        let line = &row.line;
        self.event_id.append_value(&line.event_id);
        self.operation_type.append_value(&line.operation_type);
        self.data_source.append_value(&line.data_source);
        self.db.append_value(&line.ns.db);
        self.coll.append_value(&line.ns.coll);
        self.cluster_time.append_value(row.cluster_time_ms);
        self.increment.append_value(row.increment);
        self.wall_time.append_option(row.wall_time_ms);
        self.txn_number.append_option(row.txn_number);
        self.document_key.append_value(line.document_key.get());
        self.update_description
            .append_option(line.update_description.map(RawValue::get));
        self.data.append_value(line.data.get());
        self.rows += 1;
        self.bytes += bytes;
    }

    fn finish(mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.operation_type.finish()),
            Arc::new(self.data_source.finish()),
            Arc::new(self.db.finish()),
            Arc::new(self.coll.finish()),
            Arc::new(self.cluster_time.finish()),
            Arc::new(self.increment.finish()),
            Arc::new(self.wall_time.finish()),
            Arc::new(self.txn_number.finish()),
            Arc::new(self.document_key.finish()),
            Arc::new(self.update_description.finish()),
            Arc::new(self.data.finish()),
        ];
        RecordBatch::try_new(schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMillisecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::domain::{ChangeEvent, Encoding, Record};

    /// A change event (canonical Extended JSON, as Atlas sends it) on `shop.orders`;
    /// `extra` adds fields after `documentKey`.
    fn event(operation: &str, token: &str, time: u32, extra: &str) -> String {
        format!(
            r#"{{"_id":{{"_data":"{token}"}},"operationType":"{operation}","clusterTime":{{"$timestamp":{{"t":{time},"i":3}}}},"ns":{{"db":"shop","coll":"or\"ders"}},"documentKey":{{"_id":{{"$oid":"573a1390f29313caabcd42e8"}}}}{extra}}}"#
        )
    }

    /// The record line the handler writes for `event`.
    fn line(event: &str, encoding: Encoding) -> Vec<u8> {
        let raw = RawValue::from_string(event.to_owned()).expect("JSON");
        let ChangeEvent::Data(change) = ChangeEvent::parse(&raw).expect("an event") else {
            panic!("a data change");
        };
        let record = Record::try_from(*change).expect("selectable");
        record.to_json_line(encoding).expect("valid")
    }

    /// The raw text of each top-level field of a line.
    fn fields(line: &[u8]) -> HashMap<String, String> {
        let map: HashMap<String, Box<RawValue>> = serde_json::from_slice(line).expect("JSON");
        map.into_iter()
            .map(|(key, value)| (key, value.get().to_owned()))
            .collect()
    }

    fn write(lines: &[Vec<u8>], row_group_bytes: usize) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let handle = file.reopen().expect("reopen");
        let mut writer =
            ParquetPartWriter::with_row_group_bytes(handle, row_group_bytes).expect("create");
        for line in lines {
            writer.push(line).expect("a valid record");
        }
        assert_eq!(writer.finish().expect("finish"), lines.len() as u64);
        file
    }

    /// Every column's values, row by row, as text (`None` for null), and the row groups.
    fn read(file: &tempfile::NamedTempFile) -> (Vec<HashMap<String, Option<String>>>, usize) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file.reopen().expect("reopen"))
            .expect("a Parquet file");
        let row_groups = builder.metadata().num_row_groups();
        assert_eq!(builder.schema().as_ref(), schema().as_ref());
        let mut rows = Vec::new();
        for batch in builder.build().expect("reader") {
            let batch = batch.expect("batch");
            for index in 0..batch.num_rows() {
                let mut row = HashMap::new();
                for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                    let value = (!column.is_null(index)).then(|| match column.data_type() {
                        DataType::Utf8 => column.as_string::<i32>().value(index).to_owned(),
                        DataType::Int64 => {
                            column.as_primitive::<Int64Type>().value(index).to_string()
                        }
                        _ => column
                            .as_primitive::<TimestampMillisecondType>()
                            .value(index)
                            .to_string(),
                    });
                    row.insert(field.name().clone(), value);
                }
                rows.push(row);
            }
        }
        (rows, row_groups)
    }

    fn text(value: &str) -> Option<String> {
        Some(value.to_owned())
    }

    #[test]
    fn rows_hold_the_lines_fields_in_both_encodings() {
        for encoding in [Encoding::Relaxed, Encoding::Canonical] {
            let update = event(
                "update",
                "82A1",
                1_700_652_025,
                r#","wallTime":{"$date":{"$numberLong":"1700652025048"}},"txnNumber":{"$numberLong":"9007199254740993"},"updateDescription":{"updatedFields":{"n":{"$numberInt":"1"},"at":{"$date":{"$numberLong":"1"}}},"removedFields":["x"],"truncatedArrays":[]},"fullDocument":{"_id":{"$oid":"573a1390f29313caabcd42e8"},"n":{"$numberInt":"1"},"price":{"$numberDecimal":"1.10"}}"#,
            );
            let delete = event("delete", "82A2", 1_700_652_026, "");
            let lines = [line(&update, encoding), line(&delete, encoding)];
            let (rows, _) = read(&write(&lines, ROW_GROUP_BYTES));
            assert_eq!(rows.len(), 2);
            for (row, line) in rows.iter().zip(&lines) {
                let raw = fields(line);
                for column in ["documentKey", "updateDescription", "data"] {
                    assert_eq!(
                        row[column],
                        raw.get(column).cloned(),
                        "{column} is the line's text"
                    );
                }
                assert_eq!(row["db"], text("shop"));
                assert_eq!(row["coll"], text("or\"ders"));
                assert_eq!(row["clusterTimeIncrement"], text("3"));
            }
            assert_eq!(rows[0]["eventId"], text("82A1"));
            assert_eq!(rows[0]["operationType"], text("update"));
            assert_eq!(rows[0]["dataSource"], text("fullDocument"));
            assert_eq!(rows[0]["clusterTime"], text("1700652025000"));
            assert_eq!(rows[0]["wallTime"], text("1700652025048"));
            assert_eq!(rows[0]["txnNumber"], text("9007199254740993"));
            assert_eq!(rows[1]["dataSource"], text("documentKey"));
            assert_eq!(rows[1]["wallTime"], None);
            assert_eq!(rows[1]["txnNumber"], None);
            assert_eq!(rows[1]["updateDescription"], None);
        }
    }

    #[test]
    fn wall_times_before_1970_and_after_9999_keep_their_milliseconds() {
        let dates = [
            -62_135_596_800_001_i64,
            -1,
            0,
            1_356_351_330_501,
            253_402_300_799_999,
            253_402_300_800_000,
        ];
        for encoding in [Encoding::Relaxed, Encoding::Canonical] {
            let lines: Vec<Vec<u8>> = dates
                .iter()
                .map(|ms| {
                    let extra = format!(r#","wallTime":{{"$date":{{"$numberLong":"{ms}"}}}}"#);
                    line(&event("delete", "82B0", 1_700_000_000, &extra), encoding)
                })
                .collect();
            if encoding == Encoding::Relaxed {
                // The ISO form is what relaxed writes inside 1970-9999: both forms are read.
                assert!(fields(&lines[3])["wallTime"].contains("2012-12-24T12:15:30.501Z"));
                assert!(fields(&lines[1])["wallTime"].contains("$numberLong"));
            }
            let (rows, _) = read(&write(&lines, ROW_GROUP_BYTES));
            let read: Vec<Option<String>> =
                rows.iter().map(|row| row["wallTime"].clone()).collect();
            let expected: Vec<Option<String>> =
                dates.iter().map(|ms| Some(ms.to_string())).collect();
            assert_eq!(read, expected, "{encoding:?}");
        }
    }

    #[test]
    fn txn_numbers_absent_or_present_in_either_form() {
        for encoding in [Encoding::Relaxed, Encoding::Canonical] {
            let with = |txn: &str| {
                line(
                    &event("delete", "82C0", 1, &format!(r#","txnNumber":{txn}"#)),
                    encoding,
                )
            };
            let lines = [
                line(&event("delete", "82C0", 1, ""), encoding),
                with(r#"{"$numberLong":"-5"}"#),
                with(r#"{"$numberInt":"12"}"#),
                with(r#"{"$numberLong":"9223372036854775807"}"#),
            ];
            if encoding == Encoding::Relaxed {
                assert_eq!(fields(&lines[1])["txnNumber"], "-5");
            }
            let (rows, _) = read(&write(&lines, ROW_GROUP_BYTES));
            let read: Vec<Option<String>> =
                rows.iter().map(|row| row["txnNumber"].clone()).collect();
            assert_eq!(
                read,
                [None, text("-5"), text("12"), text("9223372036854775807")]
            );
        }
    }

    /// Pushes `good` valid lines, then `bad`: the error, if any.
    fn refused(bad: &str) -> ParquetError {
        let file = tempfile::tempfile().expect("temp file");
        let mut writer = ParquetPartWriter::create(file).expect("create");
        let good = line(&event("delete", "82D0", 1, ""), Encoding::Relaxed);
        writer.push(&good).expect("valid");
        writer.push(&good).expect("valid");
        writer.push(bad.as_bytes()).expect_err("malformed")
    }

    #[test]
    fn malformed_records_are_refused_naming_line_and_field_never_the_document() {
        let good = String::from_utf8(line(&event("delete", "82D0", 1, ""), Encoding::Relaxed))
            .expect("UTF-8");
        let cases = [
            ("not json {secret", None),
            (r#"{"operationType":"delete"}"#, None),
            (&good.replace(r#""data":{"#, r#""extra":1,"data":{"#), None),
            (
                &good.replace(r#""t":1,"#, r#""t":-1,"#),
                Some("clusterTime"),
            ),
            (
                &good.replace(
                    r#""data":{"_id":{"$oid":"573a1390f29313caabcd42e8"}}"#,
                    r#""data":"secret""#,
                ),
                Some("data"),
            ),
            (
                &good.replace(r#","data""#, r#","wallTime":{"$date":"secret"},"data""#),
                Some("wallTime"),
            ),
            (
                &good.replace(r#","data""#, r#","txnNumber":"secret","data""#),
                Some("txnNumber"),
            ),
            (
                &good.replace(r#","data""#, r#","txnNumber":1.5,"data""#),
                Some("txnNumber"),
            ),
        ];
        for (bad, expected_field) in cases {
            let error = refused(bad);
            let message = error.to_string();
            assert!(message.starts_with("line 3"), "{message}");
            assert!(!message.contains("secret"), "{message}");
            match (error, expected_field) {
                (ParquetError::NotARecord { line: 3, .. }, None) => {}
                (ParquetError::Field { line: 3, field, .. }, Some(expected)) => {
                    assert_eq!(field, expected)
                }
                (other, _) => panic!("{bad}: {other:?}"),
            }
        }
        assert!(refused("{\"operationType\":\"delete\"}")
            .to_string()
            .contains("dataSource"));
    }

    #[test]
    fn large_parts_keep_every_row_in_order_across_batches_and_row_groups() {
        // Documents of hex text zstd cannot shrink much, so the row-group bound is reached.
        let rows = BATCH_ROWS * 2 + 100;
        let lines: Vec<Vec<u8>> = (0..rows)
            .map(|n| {
                let filler: String = (0..40).map(|k| format!("{:016x}", (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k)).collect();
                let extra = format!(r#","fullDocumentBeforeChange":{{"_id":{{"$oid":"573a1390f29313caabcd42e8"}},"n":{n},"f":"{filler}"}}"#);
                line(&event("delete", &format!("82{n:08X}"), 1_700_000_000, &extra), Encoding::Relaxed)
            })
            .collect();
        let (read, row_groups) = read(&write(&lines, 1 << 20));
        assert!(
            row_groups >= 3,
            "the row groups were flushed by size: {row_groups}"
        );
        let ids: Vec<Option<String>> = read.iter().map(|row| row["eventId"].clone()).collect();
        let expected: Vec<Option<String>> = (0..rows).map(|n| Some(format!("82{n:08X}"))).collect();
        assert_eq!(ids, expected);
        assert_eq!(
            read[rows - 1]["data"],
            fields(&lines[rows - 1]).get("data").cloned()
        );
    }
}
