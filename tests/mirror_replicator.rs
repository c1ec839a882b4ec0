//! The reference replicator's own contract (`tests/python/replicator.py`, the Fabric
//! stand-in the mirror is checked with): small landing zones written by pyarrow (never by
//! the project's writer) are applied in order, moved to `_ProcessedFiles/`, and every
//! breach of Open Mirroring's landing-zone format is refused with a clear message.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::{python, replicator};

const ORDERS: &str = "shop.schema/orders";
/// 2024-06-16T10:00:00Z in milliseconds.
const AT: i64 = 1_718_532_000_000;

/// A landing zone and the replicator's state beside it.
struct Zone {
    landing: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Zone {
    fn new() -> Zone {
        Zone {
            landing: tempfile::tempdir().expect("landing zone"),
            state: tempfile::tempdir().expect("state"),
        }
    }

    fn table(&self, table: &str) -> PathBuf {
        let folder = self.landing.path().join(table);
        std::fs::create_dir_all(&folder).expect("table folder");
        folder
    }

    /// `_metadata.json` with `_id` as the key column.
    fn metadata(&self, table: &str) {
        std::fs::write(
            self.table(table).join("_metadata.json"),
            r#"{"keyColumns":["_id"]}"#,
        )
        .expect("metadata");
    }

    /// Data file `name` of `table`, written by pyarrow with these columns and rows.
    fn file(&self, table: &str, name: &str, columns: &[(&str, &str)], rows: &[Value]) {
        let path = self.table(table).join(name);
        write_parquet(&path, columns, rows);
    }

    /// File number `n` of the orders table: `_id`, `qty` (int64), `__rowMarker__`.
    fn orders(&self, n: u64, rows: &[Value]) {
        self.file(
            ORDERS,
            &format!("{n:020}.parquet"),
            &[
                ("_id", "string"),
                ("qty", "int64"),
                ("__rowMarker__", "int32"),
            ],
            rows,
        );
    }

    fn state_file(&self) -> PathBuf {
        self.state.path().join("state.json")
    }

    fn apply(&self) -> Result<(), String> {
        replicator::apply(self.landing.path(), &self.state_file())
    }

    fn dump(&self) -> Value {
        replicator::dump(&self.state_file())
    }

    /// Applying fails with a message holding every one of `parts`.
    fn refused(&self, parts: &[&str]) -> String {
        let message = self.apply().expect_err("the replicator refuses");
        for part in parts {
            assert!(message.contains(part), "{part:?} not in: {message}");
        }
        message
    }

    /// Names in a folder of the landing zone, sorted.
    fn names(&self, folder: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.landing.path().join(folder))
            .expect("folder")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .into_string()
                    .expect("UTF-8")
            })
            .collect();
        names.sort();
        names
    }
}

/// Writes a Parquet file with pyarrow (`tests/python/write_landing_file.py`).
fn write_parquet(path: &Path, columns: &[(&str, &str)], rows: &[Value]) {
    let description = json!({"columns": columns, "rows": rows}).to_string();
    let output = python::run_with_input(
        &python::script("write_landing_file.py"),
        &[path],
        description.as_bytes(),
    );
    assert!(
        output.status.success(),
        "writing {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn file_name(n: u64) -> String {
    format!("{n:020}.parquet")
}

#[test]
fn files_apply_in_number_order_rows_in_row_order_then_move_to_processed_files() {
    let zone = Zone::new();
    zone.metadata(ORDERS);
    let first = [
        ("_id", "string"),
        ("qty", "int64"),
        ("price", "double"),
        ("at", "timestamp"),
        ("__rowMarker__", "int32"),
    ];
    zone.file(
        ORDERS,
        &file_name(1),
        &first,
        &[
            json!(["a", 1, 1.5, AT, 0]),
            json!(["b", 2, "NaN", AT + 1, 4]),
            json!(["a", 3, "Infinity", null, 1]),
            json!(["c", 9, -0.25, AT, 4]),
            json!(["c", null, null, null, 2]),
        ],
    );
    // The second file drops `price` and brings `note`: the row it upserts has no price.
    zone.file(
        ORDERS,
        &file_name(2),
        &[
            ("_id", "string"),
            ("qty", "int64"),
            ("note", "string"),
            ("__rowMarker__", "int32"),
        ],
        &[
            json!(["b", 5, "gift", 4]),
            json!(["zz", null, null, 2]),
            json!(["d", 6, null, 0]),
        ],
    );
    // Hidden names are not data: a producer's scratch space and temporary names.
    std::fs::create_dir_all(zone.table(ORDERS).join("_scratchPad")).expect("scratch");
    std::fs::write(zone.table(ORDERS).join("_scratchPad/x.parquet"), b"junk").expect("junk");
    std::fs::write(zone.table(ORDERS).join("_tmp-0001"), b"junk").expect("junk");
    zone.metadata("plain");
    zone.file(
        "plain",
        &file_name(1),
        &[
            ("_id", "string"),
            ("on", "bool"),
            ("__rowMarker__", "int32"),
        ],
        &[json!(["k", true, 4])],
    );

    zone.apply().expect("applied");

    let dump = zone.dump();
    assert_eq!(
        dump[ORDERS]["columns"],
        json!({"_id": "string", "qty": "int64", "price": "double",
               "at": "timestamp[ms, tz=UTC]", "note": "string"}),
        "{dump}"
    );
    assert_eq!(
        dump[ORDERS]["rows"],
        json!({
            "a": {"_id": "a", "qty": 3, "price": "Infinity", "at": null, "note": null},
            "b": {"_id": "b", "qty": 5, "price": null, "at": null, "note": "gift"},
            "d": {"_id": "d", "qty": 6, "price": null, "at": null, "note": null},
        }),
        "{dump}"
    );
    assert_eq!(dump[ORDERS]["nextFile"], 3);
    assert_eq!(
        dump["plain"]["rows"],
        json!({"k": {"_id": "k", "on": true}})
    );
    assert_eq!(
        zone.names(ORDERS),
        [
            "_ProcessedFiles",
            "_metadata.json",
            "_scratchPad",
            "_tmp-0001"
        ],
        "the data files left the table folder"
    );
    assert_eq!(
        zone.names(&format!("{ORDERS}/_ProcessedFiles")),
        [file_name(1), file_name(2)]
    );

    // Numbering continues from the replicator's state, not from the (empty) folder.
    zone.orders(3, &[json!(["a", 10, 4]), json!(["d", null, 2])]);
    zone.apply().expect("applied");
    let dump = zone.dump();
    assert_eq!(dump[ORDERS]["nextFile"], 4);
    assert_eq!(dump[ORDERS]["rows"]["a"]["qty"], 10);
    assert_eq!(
        dump[ORDERS]["rows"]["a"]["price"],
        Value::Null,
        "a whole row"
    );
    assert!(dump[ORDERS]["rows"].get("d").is_none(), "deleted: {dump}");
    zone.apply().expect("nothing new is nothing to do");
}

#[test]
fn a_gap_blocks_the_table_for_good() {
    let zone = Zone::new();
    zone.metadata(ORDERS);
    zone.orders(1, &[json!(["a", 1, 4])]);
    zone.orders(3, &[json!(["a", 3, 4])]);
    zone.refused(&["gap", &file_name(2), &file_name(3)]);

    zone.orders(2, &[json!(["a", 2, 4])]);
    zone.refused(&[ORDERS, "blocked", "gap"]);
}

#[test]
fn names_other_than_twenty_digits_and_parquet_are_refused() {
    for name in [
        "1.parquet",
        "0000000000000000001.parquet",
        "000000000000000000001.parquet",
        "00000000000000000001.csv",
        "0000000000000000000a.parquet",
    ] {
        let zone = Zone::new();
        zone.metadata(ORDERS);
        zone.file(
            ORDERS,
            name,
            &[("_id", "string"), ("__rowMarker__", "int32")],
            &[json!(["a", 4])],
        );
        zone.refused(&[name, "20 digits"]);
    }
    let zone = Zone::new();
    zone.metadata(ORDERS);
    zone.orders(0, &[json!(["a", 1, 4])]);
    zone.refused(&["numbers start at 1"]);
}

#[test]
fn a_data_file_before_the_metadata_is_refused() {
    let zone = Zone::new();
    zone.orders(1, &[json!(["a", 1, 4])]);
    zone.refused(&["_metadata.json", "keyColumns"]);
}

#[test]
fn the_row_marker_must_be_the_last_column() {
    let zone = Zone::new();
    zone.metadata(ORDERS);
    zone.file(
        ORDERS,
        &file_name(1),
        &[
            ("_id", "string"),
            ("__rowMarker__", "int32"),
            ("qty", "int64"),
        ],
        &[json!(["a", 4, 1])],
    );
    zone.refused(&["__rowMarker__ is not the last column"]);

    let zone = Zone::new();
    zone.metadata(ORDERS);
    zone.file(ORDERS, &file_name(1), &[("_id", "string")], &[json!(["a"])]);
    zone.refused(&["no __rowMarker__"]);
}

#[test]
fn a_column_type_never_changes() {
    let zone = Zone::new();
    zone.metadata(ORDERS);
    zone.orders(1, &[json!(["a", 1, 4])]);
    zone.file(
        ORDERS,
        &file_name(2),
        &[
            ("_id", "string"),
            ("qty", "string"),
            ("__rowMarker__", "int32"),
        ],
        &[json!(["a", "one", 4])],
    );
    zone.refused(&["'qty' changed type from int64 to string"]);
    let dump = zone.dump();
    assert_eq!(dump[ORDERS]["rows"]["a"]["qty"], 1, "file 1 stays applied");
    assert_eq!(dump[ORDERS]["nextFile"], 2);
}

#[test]
fn a_file_landed_again_after_it_was_processed_is_refused() {
    let zone = Zone::new();
    zone.metadata(ORDERS);
    zone.orders(1, &[json!(["a", 1, 4])]);
    zone.apply().expect("applied");
    let table = zone.table(ORDERS);
    std::fs::copy(
        table.join("_ProcessedFiles").join(file_name(1)),
        table.join(file_name(1)),
    )
    .expect("landed again");
    zone.refused(&[&file_name(1), "already applied"]);
}

#[test]
fn row_markers_are_checked_against_the_table() {
    for (rows, why) in [
        (
            vec![json!(["a", 1, 4]), json!(["a", 2, 0])],
            "insert of a key that exists",
        ),
        (
            vec![json!(["a", 1, 1])],
            "update of a key that does not exist",
        ),
        (
            vec![json!(["a", 1, 3])],
            "__rowMarker__ 3 is not 0, 1, 2 or 4",
        ),
        (vec![json!([null, 1, 4])], "null key"),
    ] {
        let zone = Zone::new();
        zone.metadata(ORDERS);
        zone.orders(1, &rows);
        zone.refused(&[why]);
        assert_eq!(
            zone.dump()[ORDERS]["rows"],
            json!({}),
            "no row of a refused file"
        );
    }
}
