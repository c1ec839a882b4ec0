//! The mirror pass over a local lake and a local landing zone: numbering, the order rule
//! for late and repeated changes, updates without a full document, late markers, and a
//! pass stopped at every storage operation (docs/decisions.md, "Issue #10"). The contract
//! as Fabric reads it is checked by the independent replicator (tests/mirror_random.rs).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow_array::{Array, Int32Array, StringArray};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;
use crate::compact::DEFAULT_COMPACT_DELAY;
use crate::domain::extjson::Framing;
use crate::domain::{Encoding, DEFAULT_TEMPLATE};
use crate::ingest::Ingestor;
use crate::sink::testing::{files_under, Stopping};
use crate::sink::{LakeFile, LocalLake};

/// 2024-06-16T10:00:00Z.
const HOUR_10: u32 = 1_718_532_000;

struct Setup {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    lake_root: std::path::PathBuf,
    landing_root: std::path::PathBuf,
    lake: Arc<dyn Sink>,
    landing: Arc<dyn Sink>,
    ingestor: Arc<Ingestor>,
    layout: PathLayout,
}

fn segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .map(|s| Segment::literal(s).expect("segment"))
        .collect()
}

impl Setup {
    fn new() -> Setup {
        let lake_dir = tempfile::tempdir().expect("dir");
        let landing_dir = tempfile::tempdir().expect("dir");
        let lake: Arc<dyn Sink> =
            Arc::new(LocalLake::open(lake_dir.path(), "c", false).expect("lake"));
        let landing: Arc<dyn Sink> =
            Arc::new(LocalLake::open(landing_dir.path(), "zone", false).expect("zone"));
        let layout = PathLayout::new(segments("changes"), DEFAULT_TEMPLATE, None).expect("layout");
        let ingestor = Arc::new(Ingestor::new(
            Arc::clone(&lake),
            layout.clone(),
            Encoding::Relaxed,
        ));
        Setup {
            lake_root: lake_dir.path().join("c"),
            landing_root: landing_dir.path().join("zone"),
            _dirs: (lake_dir, landing_dir),
            lake,
            landing,
            ingestor,
            layout,
        }
    }

    fn settings(&self) -> MirrorSettings {
        MirrorSettings {
            enabled: true,
            state_root: segments("changes-hourly"),
            landing_directory: segments("LandingZone"),
            delay: DEFAULT_COMPACT_DELAY,
            max_rows_per_file: 1000,
            time_budget: Duration::from_secs(3600),
        }
    }

    fn mirror(&self) -> Mirror {
        self.mirror_with(Arc::clone(&self.lake), self.settings())
    }

    fn mirror_with(&self, lake: Arc<dyn Sink>, settings: MirrorSettings) -> Mirror {
        Mirror::new(
            lake,
            Arc::clone(&self.landing),
            self.layout.clone(),
            settings,
        )
    }

    async fn ingest(&self, events: &[String]) {
        let body = format!("[{}]", events.join(","));
        self.ingestor
            .ingest(Bytes::from(body), Framing::Json)
            .await
            .expect("ingested");
    }

    fn table_dir(&self, coll: &str) -> std::path::PathBuf {
        self.landing_root.join("LandingZone/d.schema").join(coll)
    }

    /// The table's data file names, in order: those in place and those Fabric moved to
    /// `_ProcessedFiles/` (a name in both places is there twice).
    fn data_files(&self, coll: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .data_paths(coll)
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    fn data_paths(&self, coll: &str) -> Vec<std::path::PathBuf> {
        let table = self.table_dir(coll);
        let mut paths = Vec::new();
        for folder in [table.clone(), table.join("_ProcessedFiles")] {
            if let Ok(entries) = std::fs::read_dir(folder) {
                paths.extend(
                    entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "parquet")),
                );
            }
        }
        paths.sort_by_key(|p| p.file_name().map(ToOwned::to_owned));
        paths
    }

    /// What Fabric does with applied files: moves them to `_ProcessedFiles/`.
    fn process_files(&self, coll: &str) {
        let table = self.table_dir(coll);
        let processed = table.join("_ProcessedFiles");
        std::fs::create_dir_all(&processed).expect("dir");
        for path in self.data_paths(coll) {
            if path.parent() == Some(table.as_path()) {
                let name = path.file_name().expect("name");
                assert!(!processed.join(name).exists(), "{name:?} published twice");
                std::fs::rename(&path, processed.join(name)).expect("move");
            }
        }
    }

    /// The table as its data files leave it, applied in order: `_id` -> the row's
    /// `v` column (deleted rows absent). A small stand-in for the replicator.
    fn table(&self, coll: &str) -> BTreeMap<String, Option<String>> {
        let mut table = BTreeMap::new();
        for path in self.data_paths(coll) {
            let file = std::fs::File::open(path).expect("file");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet")
                .build()
                .expect("reader");
            for batch in reader {
                let batch = batch.expect("batch");
                let ids = column::<StringArray>(&batch, "_id");
                let markers = column::<Int32Array>(&batch, "__rowMarker__");
                let schema = batch.schema();
                let last = schema.fields().last().expect("a column");
                assert_eq!(last.name(), "__rowMarker__", "the marker is last");
                let values = batch
                    .column_by_name("v")
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
                for row in 0..batch.num_rows() {
                    // The documents' `_id`s are Int32: their key text is canonical
                    // Extended JSON, `{"$numberInt":"1"}`; the tables below say `1`.
                    let id = serde_json::from_str::<serde_json::Value>(ids.value(row))
                        .ok()
                        .and_then(|v| v["$numberInt"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| panic!("an Int32 key: {}", ids.value(row)));
                    match markers.value(row) {
                        4 => {
                            let value = values
                                .as_ref()
                                .filter(|v| !v.is_null(row))
                                .map(|v| v.value(row).to_owned());
                            table.insert(id, value);
                        }
                        2 => {
                            table.remove(&id);
                        }
                        other => panic!("unexpected marker {other}"),
                    }
                }
            }
        }
        table
    }

    fn files_under(&self, relative: &str) -> Vec<String> {
        let mut names: Vec<String> = files_under(&self.lake_root.join(relative))
            .iter()
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        names.sort();
        names
    }
}

fn column<'b, T: 'static>(batch: &'b arrow_array::RecordBatch, name: &str) -> &'b T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("type of {name}"))
}

/// A change event of document `id` at `seconds` (`n` orders it within the second and
/// makes its resume token unique). `v` is the document's value; `None` for a delete.
fn change(coll: &str, op: &str, id: u32, seconds: u32, n: u32, v: Option<&str>) -> String {
    let ns = serde_json::json!({"db": "d", "coll": coll});
    let token = format!("82{seconds:08X}{n:08X}");
    let full = match (op, v) {
        ("delete", _) => String::new(),
        (_, Some(v)) => format!(r#","fullDocument":{{"_id":{id},"v":"{v}"}}"#),
        (_, None) => String::new(),
    };
    format!(
        r#"{{"_id":{{"_data":"{token}"}},"operationType":"{op}","clusterTime":{{"$timestamp":{{"t":{seconds},"i":{n}}}}},"ns":{ns},"documentKey":{{"_id":{id}}}{full}}}"#
    )
}

fn at(seconds_after_hour_10: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(HOUR_10) + seconds_after_hour_10)
}

fn expect_table(pairs: &[(&str, &str)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
        .collect()
}

#[tokio::test]
async fn changes_become_numbered_files_and_an_idle_pass_adds_none() {
    let setup = Setup::new();
    setup
        .ingest(&[
            change("c", "insert", 1, HOUR_10 + 1, 1, Some("a")),
            change("c", "insert", 2, HOUR_10 + 2, 1, Some("b")),
            change("other", "insert", 1, HOUR_10 + 3, 1, Some("z")),
        ])
        .await;
    let summary = setup.mirror().pass(at(60)).await.expect("pass");
    assert_eq!(
        (
            summary.tables,
            summary.changes,
            summary.upserts,
            summary.files
        ),
        (2, 3, 3, 2),
        "{summary:?}"
    );
    assert_eq!(setup.data_files("c"), vec!["00000000000000000001.parquet"]);
    let metadata =
        std::fs::read_to_string(setup.table_dir("c").join("_metadata.json")).expect("metadata");
    assert_eq!(metadata, r#"{"keyColumns":["_id"]}"#);
    assert_eq!(setup.table("c"), expect_table(&[("1", "a"), ("2", "b")]));

    let idle = setup.mirror().pass(at(120)).await.expect("idle");
    assert_eq!((idle.changes, idle.files), (0, 0), "{idle:?}");

    setup
        .ingest(&[change("c", "update", 1, HOUR_10 + 100, 1, Some("a2"))])
        .await;
    setup.mirror().pass(at(180)).await.expect("pass");
    assert_eq!(
        setup.data_files("c"),
        vec![
            "00000000000000000001.parquet",
            "00000000000000000002.parquet"
        ]
    );
    assert_eq!(setup.table("c"), expect_table(&[("1", "a2"), ("2", "b")]));
}

#[tokio::test]
async fn a_late_change_never_overwrites_a_newer_state_nor_resurrects_a_deleted_one() {
    let setup = Setup::new();
    setup
        .ingest(&[
            change("c", "insert", 1, HOUR_10 + 1, 1, Some("v1")),
            change("c", "update", 1, HOUR_10 + 30, 1, Some("v3")),
            change("c", "insert", 2, HOUR_10 + 1, 2, Some("w1")),
            change("c", "delete", 2, HOUR_10 + 30, 2, None),
        ])
        .await;
    let first = setup.mirror().pass(at(60)).await.expect("pass");
    assert_eq!(
        (first.upserts, first.deletes, first.stale),
        (1, 1, 2),
        "one row per key, the older changes superseded: {first:?}"
    );
    assert_eq!(setup.table("c"), expect_table(&[("1", "v3")]));

    // Older changes of both keys arrive late, and one is delivered again.
    setup
        .ingest(&[
            change("c", "update", 1, HOUR_10 + 10, 1, Some("v2")),
            change("c", "update", 2, HOUR_10 + 10, 2, Some("w2")),
            change("c", "insert", 1, HOUR_10 + 1, 1, Some("v1")),
        ])
        .await;
    let late = setup.mirror().pass(at(120)).await.expect("pass");
    assert_eq!(
        (late.changes, late.stale, late.files),
        (2, 2, 0),
        "{late:?}"
    );
    assert_eq!(setup.table("c"), expect_table(&[("1", "v3")]));
    assert_eq!(setup.data_files("c").len(), 1, "no file without rows");

    // A newer change still wins, and numbering continues without a gap.
    setup
        .ingest(&[change("c", "insert", 2, HOUR_10 + 40, 1, Some("w3"))])
        .await;
    setup.mirror().pass(at(180)).await.expect("pass");
    assert_eq!(setup.table("c"), expect_table(&[("1", "v3"), ("2", "w3")]));
    assert_eq!(setup.data_files("c").len(), 2);
}

#[tokio::test]
async fn a_late_change_newer_than_the_published_state_is_applied() {
    let setup = Setup::new();
    setup
        .ingest(&[
            change("c", "insert", 1, HOUR_10 + 1, 1, Some("v1")),
            change("c", "insert", 2, HOUR_10 + 50, 1, Some("w1")),
        ])
        .await;
    setup.mirror().pass(at(60)).await.expect("pass");
    // Older than the table's newest change (key 2), newer than key 1's state.
    setup
        .ingest(&[change("c", "update", 1, HOUR_10 + 20, 1, Some("v2"))])
        .await;
    let summary = setup.mirror().pass(at(120)).await.expect("pass");
    assert_eq!((summary.upserts, summary.stale), (1, 0), "{summary:?}");
    assert_eq!(setup.table("c"), expect_table(&[("1", "v2"), ("2", "w1")]));
}

#[tokio::test]
async fn updates_without_a_full_document_are_counted_and_listed_not_dropped_silently() {
    let setup = Setup::new();
    setup
        .ingest(&[
            change("c", "insert", 1, HOUR_10 + 1, 1, Some("v1")),
            change("c", "update", 1, HOUR_10 + 30, 1, None),
        ])
        .await;
    let summary = setup.mirror().pass(at(60)).await.expect("pass");
    assert_eq!(
        (summary.upserts, summary.without_full_document),
        (1, 1),
        "{summary:?}"
    );
    let listed = setup.files_under("changes-hourly/_mirror/noFullDocument/d/c");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].starts_with(&format!("{:010}-", HOUR_10 + 30)));
    // It does not count as applied: an older full change arriving later still updates.
    setup
        .ingest(&[change("c", "update", 1, HOUR_10 + 20, 1, Some("v2"))])
        .await;
    setup.mirror().pass(at(120)).await.expect("pass");
    assert_eq!(setup.table("c"), expect_table(&[("1", "v2")]));
}

#[tokio::test]
async fn closed_hours_are_listed_again_only_for_late_markers() {
    let setup = Setup::new();
    setup
        .ingest(&[change("c", "insert", 1, HOUR_10 + 1, 1, Some("v1"))])
        .await;
    // Hour 10 closes: the pass starts after its end plus the delay.
    let closing = at(3600 + 700);
    setup.mirror().pass(closing).await.expect("pass");
    assert_eq!(
        setup.files_under("changes-hourly/_mirror/watermark"),
        vec!["2024061611"]
    );

    // A record of hour 10 without a marker is not listed again (the ingest would have
    // written one: this shows the watermark is what keeps passes small)...
    setup
        .ingest(&[change("c", "update", 1, HOUR_10 + 5, 1, Some("v2"))])
        .await;
    let unmarked = setup.mirror().pass(at(7200)).await.expect("pass");
    assert_eq!(unmarked.changes, 0, "{unmarked:?}");
    // ...and with one it is.
    let name = std::fs::read_dir(
        setup
            .lake_root
            .join("changes/d/c/year=2024/month=06/day=16/hour=10"),
    )
    .expect("hour folder")
    .flatten()
    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
    .find(|n| n.starts_with(&format!("{:010}", HOUR_10 + 5)))
    .expect("the late file");
    let key = CollectionHour {
        db: Segment::encode("d"),
        coll: Segment::encode("c"),
        hour: EventHour::of_unix_seconds(i64::from(HOUR_10)),
    };
    let marker = MirrorPaths::new(segments("changes-hourly"))
        .late_marker(&key, Segment::stored(&name).expect("name"));
    setup
        .lake
        .store_one(LakeFile {
            path: marker,
            contents: Vec::new(),
        })
        .await
        .expect("marker");
    let marked = setup.mirror().pass(at(7300)).await.expect("pass");
    assert_eq!(
        (marked.changes, marked.upserts, marked.late_markers),
        (1, 1, 1),
        "{marked:?}"
    );
    assert_eq!(setup.table("c"), expect_table(&[("1", "v2")]));
    assert!(setup.files_under("changes-hourly/_mirror/late").is_empty());

    // The ingest's markers are named by the minute it stored in (12:00 here): a pass
    // takes the hour but keeps the marker until that minute ended 600 s before the pass
    // started, since records stored later in the same minute share the name.
    setup
        .ingest(&[change("c", "update", 1, HOUR_10 + 6, 1, Some("v3"))])
        .await;
    let marker = MirrorPaths::new(segments("changes-hourly"))
        .late_marker(&key, Segment::assemble("arrived-202406161200".to_owned()));
    setup.lake.store_marker(marker).await.expect("marker");
    let young = setup.mirror().pass(at(7200 + 659)).await.expect("pass");
    assert_eq!(
        (young.changes, young.upserts, young.late_markers),
        (1, 1, 0),
        "{young:?}"
    );
    assert_eq!(setup.table("c"), expect_table(&[("1", "v3")]));
    assert_eq!(
        setup.files_under("changes-hourly/_mirror/late"),
        vec!["arrived-202406161200"]
    );
    let old = setup.mirror().pass(at(7200 + 660)).await.expect("pass");
    assert_eq!((old.changes, old.late_markers), (0, 1), "{old:?}");
    assert!(setup.files_under("changes-hourly/_mirror/late").is_empty());
}

#[tokio::test]
async fn numbering_continues_after_fabric_moves_processed_files() {
    let setup = Setup::new();
    setup
        .ingest(&[change("c", "insert", 1, HOUR_10 + 1, 1, Some("v1"))])
        .await;
    setup.mirror().pass(at(60)).await.expect("pass");
    setup.process_files("c");
    setup
        .ingest(&[change("c", "insert", 2, HOUR_10 + 70, 1, Some("w1"))])
        .await;
    setup.mirror().pass(at(120)).await.expect("pass");
    assert_eq!(
        setup.data_files("c"),
        vec![
            "00000000000000000001.parquet",
            "00000000000000000002.parquet"
        ]
    );
    let second = setup.table_dir("c").join("00000000000000000002.parquet");
    assert!(second.exists(), "the new file is in place, numbered on");
}

#[tokio::test]
async fn a_backlog_becomes_several_bounded_files_in_one_pass() {
    let setup = Setup::new();
    let events: Vec<String> = (0..25)
        .map(|n| change("c", "insert", n, HOUR_10 + n, 1, Some("x")))
        .collect();
    setup.ingest(&events).await;
    let settings = MirrorSettings {
        max_rows_per_file: 10,
        ..setup.settings()
    };
    let summary = setup
        .mirror_with(Arc::clone(&setup.lake), settings)
        .pass(at(60))
        .await
        .expect("pass");
    assert_eq!((summary.files, summary.upserts), (3, 25), "{summary:?}");
    assert_eq!(setup.table("c").len(), 25);
}

#[tokio::test]
async fn a_pass_stopped_at_any_operation_is_finished_by_the_next() {
    let mut stops = 0;
    for fail_at in 1.. {
        let setup = Setup::new();
        setup
            .ingest(&[
                change("c", "insert", 1, HOUR_10 + 1, 1, Some("v1")),
                change("c", "insert", 2, HOUR_10 + 2, 1, Some("w1")),
            ])
            .await;
        setup.mirror().pass(at(60)).await.expect("first");
        setup
            .ingest(&[
                change("c", "update", 1, HOUR_10 + 70, 1, Some("v2")),
                change("c", "update", 2, HOUR_10 + 1, 5, Some("w-stale")),
                change("c", "update", 2, HOUR_10 + 71, 1, None),
                change("c", "insert", 3, HOUR_10 + 72, 1, Some("u1")),
            ])
            .await;
        let stopping = Arc::new(Stopping::new(Arc::clone(&setup.lake), fail_at));
        let stopped = setup
            .mirror_with(stopping, setup.settings())
            .pass(at(120))
            .await;
        // Fabric applies whatever was published before the next pass runs.
        setup.process_files("c");
        let next = setup.mirror().pass(at(180)).await.expect("the next pass");
        assert_eq!(
            setup.table("c"),
            expect_table(&[("1", "v2"), ("2", "w1"), ("3", "u1")]),
            "stopped at operation {fail_at}"
        );
        assert_eq!(
            setup.data_files("c"),
            vec![
                "00000000000000000001.parquet",
                "00000000000000000002.parquet"
            ],
            "stopped at {fail_at}: contiguous, nothing published twice"
        );
        let again = setup.mirror().pass(at(240)).await.expect("idle");
        assert_eq!(
            again.changes, 0,
            "stopped at {fail_at}: {next:?} then {again:?}"
        );
        if stopped.is_ok() {
            break;
        }
        stops += 1;
    }
    assert!(stops > 8, "the pass has many points to stop at ({stops})");
}

#[tokio::test]
async fn two_passes_at_once_publish_each_number_once() {
    let setup = Setup::new();
    let events: Vec<String> = (0..40)
        .map(|n| change("c", "insert", n, HOUR_10 + n, 1, Some("x")))
        .collect();
    setup.ingest(&events).await;
    let settings = MirrorSettings {
        max_rows_per_file: 7,
        ..setup.settings()
    };
    let a = setup.mirror_with(Arc::clone(&setup.lake), settings.clone());
    let b = setup.mirror_with(Arc::clone(&setup.lake), settings.clone());
    let (ra, rb) = tokio::join!(a.pass(at(60)), b.pass(at(60)));
    for result in [ra, rb] {
        match result {
            Ok(_) | Err(MirrorError::Busy(_)) => {}
            Err(other) => panic!("{other}"),
        }
    }
    setup
        .mirror_with(Arc::clone(&setup.lake), settings)
        .pass(at(120))
        .await
        .expect("finish");
    let files = setup.data_files("c");
    let expected: Vec<String> = (1..=files.len() as u64)
        .map(|n| format!("{n:020}.parquet"))
        .collect();
    assert_eq!(files, expected, "contiguous");
    assert_eq!(setup.table("c").len(), 40);
}

#[tokio::test]
async fn a_pass_stopped_at_any_landing_zone_operation_is_finished_by_the_next() {
    let mut stops = 0;
    for fail_at in 1.. {
        let setup = Setup::new();
        setup
            .ingest(&[change("c", "insert", 1, HOUR_10 + 1, 1, Some("v1"))])
            .await;
        setup.mirror().pass(at(60)).await.expect("first");
        setup
            .ingest(&[
                change("c", "update", 1, HOUR_10 + 70, 1, Some("v2")),
                change("other", "insert", 9, HOUR_10 + 71, 1, Some("z")),
            ])
            .await;
        let landing = Arc::new(Stopping::new(Arc::clone(&setup.landing), fail_at));
        let stopped = Mirror::new(
            Arc::clone(&setup.lake),
            landing,
            setup.layout.clone(),
            setup.settings(),
        )
        .pass(at(120))
        .await;
        setup.mirror().pass(at(180)).await.expect("the next pass");
        assert_eq!(
            setup.table("c"),
            expect_table(&[("1", "v2")]),
            "at {fail_at}"
        );
        assert_eq!(setup.table("other").len(), 1, "at {fail_at}");
        assert_eq!(setup.data_files("c").len(), 2, "at {fail_at}");
        if stopped.is_ok() {
            break;
        }
        stops += 1;
    }
    assert!(stops >= 3, "metadata and data files to stop at ({stops})");
}

/// Holds the `hold_at`-th `read_all` (from 1) until released: a pass that has done some
/// work, then waits.
struct Gate {
    inner: Arc<dyn Sink>,
    calls: std::sync::atomic::AtomicUsize,
    hold_at: usize,
    open: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl Sink for Gate {
    async fn store_all(&self, files: Vec<LakeFile>) -> Vec<Result<crate::sink::Stored, SinkError>> {
        self.inner.store_all(files).await
    }
    fn list(&self, folder: &[Segment]) -> crate::sink::ListPages {
        self.inner.list(folder)
    }
    async fn read(&self, path: &LakePath) -> Result<Bytes, SinkError> {
        self.inner.read(path).await
    }
    async fn read_all(&self, paths: Vec<LakePath>) -> Vec<Result<Bytes, SinkError>> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if call == self.hold_at {
            self.open.notified().await;
        }
        self.inner.read_all(paths).await
    }
    async fn delete(&self, path: &LakePath) -> Result<(), SinkError> {
        self.inner.delete(path).await
    }
    async fn folders(&self, folder: &[Segment]) -> Result<Vec<Segment>, SinkError> {
        self.inner.folders(folder).await
    }
    async fn store_spooled(
        &self,
        path: &LakePath,
        spooled: &std::path::Path,
    ) -> Result<crate::sink::Stored, SinkError> {
        self.inner.store_spooled(path, spooled).await
    }
    fn describe(&self) -> String {
        "gate".to_owned()
    }
    async fn probe(&self) -> Result<(), SinkError> {
        self.inner.probe().await
    }
}

#[tokio::test]
async fn a_slow_pass_never_takes_a_number_again_after_old_claims_are_deleted() {
    let setup = Arc::new(Setup::new());
    setup
        .ingest(&[change("c", "insert", 1, HOUR_10 + 1, 1, Some("v1"))])
        .await;
    setup.mirror().pass(at(60)).await.expect("step 1");
    // The slow pass loads the table at step 1, then waits before reading anything.
    let open = Arc::new(tokio::sync::Notify::new());
    let gate: Arc<dyn Sink> = Arc::new(Gate {
        inner: Arc::clone(&setup.lake),
        calls: std::sync::atomic::AtomicUsize::new(0),
        hold_at: 1,
        open: Arc::clone(&open),
    });
    let slow = setup.mirror_with(gate, setup.settings());
    let slow = tokio::spawn(async move { slow.pass(at(120)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Meanwhile the timer's passes take steps 2 to 4 (claims 1 and 2 are deleted) and
    // Fabric applies every file.
    for n in 2..=4 {
        setup
            .ingest(&[change(
                "c",
                "update",
                1,
                HOUR_10 + 60 * n,
                1,
                Some(&format!("v{n}")),
            )])
            .await;
        setup
            .mirror()
            .pass(at(60 * u64::from(n) + 30))
            .await
            .expect("step");
        setup.process_files("c");
    }
    open.notify_one();
    let outcome = slow.await.expect("the slow pass ends");
    assert!(matches!(outcome, Err(MirrorError::Busy(_))), "{outcome:?}");
    setup.mirror().pass(at(600)).await.expect("after");
    assert_eq!(
        setup.data_files("c"),
        (1..=4)
            .map(|n| format!("{n:020}.parquet"))
            .collect::<Vec<_>>(),
        "each number once"
    );
    assert_eq!(setup.table("c"), expect_table(&[("1", "v4")]));
}

#[tokio::test]
async fn a_slow_pass_withdraws_a_claim_whose_step_was_finished_and_deleted() {
    let setup = Arc::new(Setup::new());
    setup
        .ingest(&[
            change("c", "insert", 1, HOUR_10 + 1, 1, Some("v1")),
            change("c", "insert", 2, HOUR_10 + 3601, 1, Some("w1")),
        ])
        .await;
    setup.mirror().pass(at(3700)).await.expect("step 1");
    setup
        .ingest(&[
            change("c", "update", 1, HOUR_10 + 10, 1, Some("v2")),
            change("c", "update", 2, HOUR_10 + 3610, 1, Some("w2")),
        ])
        .await;
    // The slow pass takes step 2 in hour 10 (two reads: the hour's logs, its changes),
    // then waits while reading hour 11's logs.
    let open = Arc::new(tokio::sync::Notify::new());
    let gate: Arc<dyn Sink> = Arc::new(Gate {
        inner: Arc::clone(&setup.lake),
        calls: std::sync::atomic::AtomicUsize::new(0),
        hold_at: 3,
        open: Arc::clone(&open),
    });
    let slow = setup.mirror_with(gate, setup.settings());
    let slow = tokio::spawn(async move { slow.pass(at(3720)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 3..=5 {
        setup
            .ingest(&[change(
                "c",
                "update",
                2,
                HOUR_10 + 3600 + 10 * n,
                1,
                Some(&format!("w{n}")),
            )])
            .await;
        setup
            .mirror()
            .pass(at(3730 + 10 * u64::from(n)))
            .await
            .expect("step");
        setup.process_files("c");
    }
    open.notify_one();
    match slow.await.expect("the slow pass ends") {
        Err(MirrorError::Busy(reason)) => assert!(reason.contains("took step"), "{reason}"),
        other => panic!("{other:?}"),
    }
    setup.mirror().pass(at(4000)).await.expect("after");
    let files = setup.data_files("c");
    let expected: Vec<String> = (1..=files.len() as u64)
        .map(|n| format!("{n:020}.parquet"))
        .collect();
    assert_eq!(files, expected, "each number once");
    assert_eq!(setup.table("c"), expect_table(&[("1", "v2"), ("2", "w5")]));
}
