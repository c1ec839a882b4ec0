//! A mirror data file, read back by pyarrow (an implementation independent of the writer's):
//! the schema the landing zone needs (`_id` first, the columns in order, `__rowMarker__`
//! last; names, types, nullability), zstd, no varying metadata, and every value: strings,
//! int64, doubles with NaN and the infinities, timestamps beyond 1970..9999, relaxed
//! Extended JSON for the other types, nulls and row markers. Then every value type of
//! MongoDB's BSON corpus, through sibling columns.

use bson::spec::{BinarySubtype, ElementType};
use bson::{doc, oid::ObjectId, Binary, Bson, DateTime, Decimal128, Document, Timestamp};
use mongo_lake_ingest::mirror::columns::{
    key_text, write_parquet, ColumnType, MirrorRow, RowChange, TableColumns,
};
use serde_json::{json, Value};

mod support;

use support::{corpus_dir, python};

/// A file written from `rows` (columns extended for them first), as pyarrow sees it; and
/// the columns.
fn written_and_read(rows: &[MirrorRow]) -> (Value, TableColumns) {
    let mut columns = TableColumns::default();
    columns.extend_for(rows);
    let bytes = write_parquet(&columns, rows).expect("a data file");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("00000000000000000001.parquet");
    std::fs::write(&path, bytes).expect("file written");
    let out = python::run_script(&python::script("read_parquet_part.py"), &[&path]);
    (
        serde_json::from_str(&out).expect("the script prints JSON"),
        columns,
    )
}

fn upsert(key: &str, document: Document) -> MirrorRow {
    MirrorRow {
        key: key.to_owned(),
        change: RowChange::Upsert(document),
    }
}

/// (name, Arrow type, nullable) of each column pyarrow read.
fn schema(file: &Value) -> Vec<(String, String, bool)> {
    file["arrowSchema"]
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
        .collect()
}

/// A double pyarrow printed with `repr`, as a Rust `f64` (NaN and infinities included).
fn double(cell: &Value) -> f64 {
    let text = cell.as_str().expect("a double's repr");
    text.parse().unwrap_or_else(|_| panic!("a double: {text}"))
}

const UTC_MS: &str = "timestamp[ms, tz=UTC]";

#[test]
fn pyarrow_reads_the_schema_values_and_markers_of_a_data_file() {
    let oid = ObjectId::parse_str("573a1390f29313caabcd42e8").expect("hex");
    let year_10000 = 253_402_300_800_000_i64;
    let before_year_1 = -62_135_596_800_001_i64;
    let rows = vec![
        upsert(
            &key_text(&Bson::ObjectId(oid)),
            doc! {
                "_id": oid, "title": "Blade Runner ✨", "year": 1982, "views": i64::MAX,
                "ratio": f64::NAN, "seen": true, "at": DateTime::from_millis(year_10000),
                "price": 10, "a b": "mapped",
                "oid": oid,
                "dec": "9.90".parse::<Decimal128>().expect("a decimal"),
                "nested": {"n": 5_i64, "d": DateTime::from_millis(0), "x": 1.5, "s": "q\"\n"},
                "list": [1, "two", Bson::Null],
                "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![0xff, 0x00] },
                "ts": Timestamp { time: 1_700_000_000, increment: 7 },
            },
        ),
        upsert(
            "movie-2",
            doc! {
                "_id": "movie-2", "title": Bson::Null, "year": i64::MIN, "ratio": f64::INFINITY,
                "seen": false, "at": DateTime::from_millis(before_year_1), "price": "10 EUR",
            },
        ),
        upsert(
            r#"{"$numberInt":"3"}"#,
            doc! {"_id": 3, "ratio": f64::NEG_INFINITY, "views": 3, "price": 9.5},
        ),
        upsert("4", doc! {"ratio": -0.0, "at": DateTime::from_millis(-1)}),
        upsert("5", doc! {"ratio": 5e-324, "year": -1}),
        MirrorRow {
            key: "movie-2".to_owned(),
            change: RowChange::Delete,
        },
    ];
    let (file, columns) = written_and_read(&rows);

    let mapped = columns.columns[7].name.clone();
    assert!(mapped.starts_with("a_b_") && mapped.len() == 12, "{mapped}");
    let expected = [
        ("_id", "string", false),
        ("title", "string", true),
        ("year", "int64", true),
        ("views", "int64", true),
        ("ratio", "double", true),
        ("seen", "bool", true),
        ("at", UTC_MS, true),
        ("price", "int64", true),
        (mapped.as_str(), "string", true),
        ("oid", "string", true),
        ("dec", "string", true),
        ("nested", "string", true),
        ("list", "string", true),
        ("bin", "string", true),
        ("ts", "string", true),
        ("price__string", "string", true),
        ("price__double", "double", true),
        ("__rowMarker__", "int32", false),
    ];
    let expected: Vec<(String, String, bool)> = expected
        .iter()
        .map(|(name, kind, nullable)| (name.to_string(), kind.to_string(), *nullable))
        .collect();
    assert_eq!(
        schema(&file),
        expected,
        "names, types, order; the marker last"
    );

    // What readers without the Arrow schema see (Fabric reads the Parquet types).
    for column in file["parquetColumns"].as_array().expect("columns") {
        let name = column["name"].as_str().expect("name");
        let logical = column["logical"].as_str().expect("logical");
        match name {
            "at" => assert!(
                logical.contains("isAdjustedToUTC=true") && logical.contains("milliseconds"),
                "{logical}"
            ),
            "__rowMarker__" => assert_eq!(column["physical"], "INT32"),
            "year" | "views" | "price" => assert_eq!(column["physical"], "INT64"),
            "ratio" | "price__double" => assert_eq!(column["physical"], "DOUBLE"),
            "seen" => assert_eq!(column["physical"], "BOOLEAN"),
            _ => assert_eq!(logical, "String", "{name}"),
        }
        let required = name == "_id" || name == "__rowMarker__";
        assert_eq!(column["optional"], json!(!required), "{name}");
    }
    assert_eq!(file["codecs"], json!(["ZSTD"]));
    assert_eq!(file["numRowGroups"], 1);
    assert_eq!(
        file["keyValueMetadata"],
        json!(["ARROW:schema"]),
        "no time or other varying metadata"
    );

    let rows_read = file["rows"].as_array().expect("rows");
    assert_eq!(rows_read.len(), rows.len());
    let at = |row: usize, name: &str| -> &Value { &rows_read[row][name] };
    let keys: Vec<&Value> = (0..rows.len()).map(|row| at(row, "_id")).collect();
    assert_eq!(
        keys,
        [
            "573a1390f29313caabcd42e8",
            "movie-2",
            r#"{"$numberInt":"3"}"#,
            "4",
            "5",
            "movie-2"
        ]
    );
    let markers: Vec<&Value> = (0..rows.len())
        .map(|row| at(row, "__rowMarker__"))
        .collect();
    assert_eq!(markers, [4, 4, 4, 4, 4, 2]);

    // Row 1: every type.
    assert_eq!(at(0, "title"), "Blade Runner ✨");
    assert_eq!(at(0, "year"), 1982);
    assert_eq!(at(0, "views"), i64::MAX);
    assert!(double(at(0, "ratio")).is_nan());
    assert_eq!(at(0, "seen"), true);
    assert_eq!(at(0, "at"), year_10000);
    assert_eq!(at(0, "price"), 10);
    assert_eq!(at(0, &mapped), "mapped");
    let relaxed = |name: &str| -> Value {
        serde_json::from_str(at(0, name).as_str().expect("JSON text")).expect("JSON")
    };
    assert_eq!(relaxed("oid"), json!({"$oid": "573a1390f29313caabcd42e8"}));
    assert_eq!(relaxed("dec"), json!({"$numberDecimal": "9.90"}));
    assert_eq!(
        at(0, "nested"),
        r#"{"n":5,"d":{"$date":"1970-01-01T00:00:00Z"},"x":1.5,"s":"q\"\n"}"#,
        "relaxed Extended JSON, keys in document order"
    );
    assert_eq!(relaxed("list"), json!([1, "two", null]));
    assert_eq!(
        relaxed("bin"),
        json!({"$binary": {"base64": "/wA=", "subType": "00"}})
    );
    assert_eq!(
        relaxed("ts"),
        json!({"$timestamp": {"t": 1_700_000_000, "i": 7}})
    );
    assert_eq!(at(0, "price__string"), &Value::Null);

    // Row 2: a null field, the extremes, a type change.
    assert_eq!(at(1, "title"), &Value::Null, "null is no value");
    assert_eq!(at(1, "year"), i64::MIN);
    assert_eq!(double(at(1, "ratio")), f64::INFINITY);
    assert_eq!(at(1, "seen"), false);
    assert_eq!(at(1, "at"), before_year_1);
    assert_eq!(
        at(1, "price"),
        &Value::Null,
        "the string went to the sibling"
    );
    assert_eq!(at(1, "price__string"), "10 EUR");
    assert_eq!(at(1, "views"), &Value::Null, "missing is null");

    assert_eq!(double(at(2, "ratio")), f64::NEG_INFINITY);
    assert_eq!(at(2, "views"), 3, "Int32 in an int64 column");
    assert_eq!(double(at(2, "price__double")), 9.5);
    let negative_zero = double(at(3, "ratio"));
    assert!(negative_zero == 0.0 && negative_zero.is_sign_negative());
    assert_eq!(at(3, "at"), -1);
    assert_eq!(double(at(4, "ratio")), 5e-324);

    // The delete: the key and the marker, nulls everywhere else.
    for (name, _, _) in &expected[1..expected.len() - 1] {
        assert_eq!(at(5, name), &Value::Null, "{name}");
    }
}

/// The column type a BSON value's element type goes to (issue #10's table), `None` for null.
fn expected_kind(element: ElementType) -> Option<ColumnType> {
    Some(match element {
        ElementType::Null => return None,
        ElementType::String => ColumnType::String,
        ElementType::Int32 | ElementType::Int64 => ColumnType::Int64,
        ElementType::Double => ColumnType::Double,
        ElementType::Boolean => ColumnType::Boolean,
        ElementType::DateTime => ColumnType::Timestamp,
        _ => ColumnType::Json,
    })
}

fn arrow_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::String | ColumnType::Json => "string",
        ColumnType::Int64 => "int64",
        ColumnType::Double => "double",
        ColumnType::Boolean => "bool",
        ColumnType::Timestamp => UTC_MS,
    }
}

/// Every valid, non-lossy case of the corpus: its document and relaxed Extended JSON (the
/// spec's where it gives one; otherwise the `bson` crate's, another implementation).
fn corpus_documents() -> Vec<(String, Document, Value)> {
    let mut documents = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("corpus dir")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for path in files {
        let corpus: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        for case in corpus["valid"].as_array().into_iter().flatten() {
            if case["lossy"].as_bool().unwrap_or(false) {
                continue;
            }
            let name = format!("{}: {}", path.display(), case["description"]);
            let bytes = hex::decode(case["canonical_bson"].as_str().expect("hex")).expect("hex");
            let document = Document::from_reader(bytes.as_slice()).expect("BSON");
            let relaxed = match case["relaxed_extjson"].as_str() {
                Some(text) => serde_json::from_str(text).expect("JSON"),
                None => Bson::Document(document.clone()).into_relaxed_extjson(),
            };
            documents.push((name, document, relaxed));
        }
    }
    assert!(
        documents.len() > 100,
        "the whole corpus: {}",
        documents.len()
    );
    documents
}

#[test]
fn every_value_type_of_the_bson_corpus_reaches_a_column_of_its_type() {
    let documents = corpus_documents();
    let rows: Vec<MirrorRow> = documents
        .iter()
        .enumerate()
        .map(|(n, (_, document, _))| upsert(&format!("case {n}"), document.clone()))
        .collect();
    let (file, columns) = written_and_read(&rows);
    let schema = schema(&file);
    assert_eq!(schema.len(), columns.columns.len() + 2);
    let rows_read = file["rows"].as_array().expect("rows");
    let mut kinds_seen = std::collections::BTreeSet::new();
    for (row, (name, document, relaxed)) in documents.iter().enumerate() {
        for (field, value) in document {
            if field == "_id" {
                continue;
            }
            let Some(kind) = expected_kind(value.element_type()) else {
                continue;
            };
            kinds_seen.insert(format!("{kind:?}"));
            let column = columns
                .column_for(field, kind)
                .unwrap_or_else(|| panic!("{name}: no column for {field:?}"));
            let index = 1 + columns
                .columns
                .iter()
                .position(|c| c == column)
                .expect("listed");
            assert_eq!(schema[index].0, column.name, "{name}");
            assert_eq!(schema[index].1, arrow_type(kind), "{name}: {field:?}");
            let cell = &rows_read[row][column.name.as_str()];
            let spec = &relaxed[field.as_str()];
            match value {
                Bson::String(text) => assert_eq!(cell, text.as_str(), "{name}"),
                Bson::Int32(number) => assert_eq!(cell, &json!(number), "{name}"),
                Bson::Int64(number) => assert_eq!(cell, &json!(number), "{name}"),
                Bson::Boolean(flag) => assert_eq!(cell, &json!(flag), "{name}"),
                Bson::Double(number) => {
                    let read = double(cell);
                    assert!(
                        read.to_bits() == number.to_bits() || (read.is_nan() && number.is_nan()),
                        "{name}: {read} for {number}"
                    );
                }
                Bson::DateTime(date) => {
                    assert_eq!(cell, &json!(date.timestamp_millis()), "{name}")
                }
                _ => {
                    let text = cell.as_str().expect("JSON text");
                    let read: Value = serde_json::from_str(text).expect("JSON");
                    assert_eq!(&read, spec, "{name}: the spec's relaxed Extended JSON");
                }
            }
        }
    }
    let all: Vec<String> = ["Boolean", "Double", "Int64", "Json", "String", "Timestamp"]
        .map(String::from)
        .to_vec();
    assert_eq!(kinds_seen.into_iter().collect::<Vec<_>>(), all);
}
