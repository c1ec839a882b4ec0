//! Exactness of compaction over the local lake: every record in exactly one part of its
//! hour, whatever arrives late, twice, or while another pass runs, and wherever a pass
//! stops (docs/decisions.md, "Issue #9"). The same pass on ADLS is tested in
//! `tests/compaction_adls.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::*;
use crate::domain::extjson::Framing;
use crate::domain::{Encoding, DEFAULT_TEMPLATE};
use crate::ingest::Ingestor;
use crate::sink::testing::{files_under, Stopping};
use crate::sink::LocalLake;

/// 2024-06-16T10:00:00Z.
const HOUR_10: u32 = 1_718_532_000;

struct Lake {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    sink: Arc<dyn Sink>,
    ingestor: Arc<Ingestor>,
    layout: PathLayout,
    spool: tempfile::TempDir,
    /// The ingest's clock (Unix seconds): after hour 10 closed, so its records are late,
    /// and an hour before [`later`], so a pass then may delete every marker it wrote.
    clock: Arc<AtomicU64>,
}

fn segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .map(|s| Segment::literal(s).expect("segment"))
        .collect()
}

impl Lake {
    fn new() -> Lake {
        let clock = Arc::new(AtomicU64::new(u64::from(HOUR_10) + 2 * 3600));
        let dir = tempfile::tempdir().expect("dir");
        let sink: Arc<dyn Sink> = Arc::new(LocalLake::open(dir.path(), "c", false).expect("lake"));
        let layout = PathLayout::new(segments("changes"), DEFAULT_TEMPLATE, None).expect("layout");
        let ingestor = Arc::new(
            Ingestor::new(Arc::clone(&sink), layout.clone(), Encoding::Relaxed)
                .with_late_markers(LateMarkers::new(
                    segments("changes-hourly"),
                    DEFAULT_COMPACT_DELAY,
                ))
                .with_clock({
                    let clock = Arc::clone(&clock);
                    Arc::new(move || {
                        SystemTime::UNIX_EPOCH + Duration::from_secs(clock.load(Ordering::Relaxed))
                    })
                }),
        );
        Lake {
            root: dir.path().join("c"),
            _dir: dir,
            sink,
            ingestor,
            layout,
            spool: tempfile::tempdir().expect("spool"),
            clock,
        }
    }

    fn settings(&self) -> CompactSettings {
        CompactSettings {
            enabled: true,
            root: segments("changes-hourly"),
            delay: DEFAULT_COMPACT_DELAY,
            formats: Formats::default(),
            delete_sources: false,
            time_budget: Duration::from_secs(3600),
            spool_dir: self.spool.path().to_path_buf(),
        }
    }

    fn compactor(&self, settings: CompactSettings) -> Compactor {
        self.compactor_on(Arc::clone(&self.sink), settings)
    }

    fn compactor_on(&self, sink: Arc<dyn Sink>, settings: CompactSettings) -> Compactor {
        Compactor::new(sink, self.layout.clone(), settings)
    }

    async fn ingest(&self, events: &[String]) {
        let body = format!("[{}]", events.join(","));
        self.ingestor
            .ingest(Bytes::from(body), Framing::Json)
            .await
            .expect("ingested");
    }

    /// Every compacted line of every part, per data file name, in file order.
    fn parts(&self, db: &str, coll: &str) -> BTreeMap<String, Vec<String>> {
        let mut parts = BTreeMap::new();
        let base = self.root.join("changes-hourly").join(db).join(coll);
        for entry in files_under(&base) {
            let name = entry
                .file_name()
                .and_then(|n| n.to_str())
                .expect("name")
                .to_owned();
            if name.ends_with(".jsonl") {
                let text = std::fs::read_to_string(&entry).expect("part");
                parts.insert(name, text.lines().map(str::to_owned).collect());
            }
        }
        parts
    }

    /// Every change file's line under a collection, sorted by eventId.
    fn change_lines(&self, db: &str, coll: &str) -> Vec<String> {
        let mut lines: Vec<String> = files_under(&self.root.join("changes").join(db).join(coll))
            .into_iter()
            .map(|path| {
                std::fs::read_to_string(path)
                    .expect("file")
                    .trim_end()
                    .to_owned()
            })
            .collect();
        lines.sort_by_key(|line| event_id_of(line));
        lines
    }

    /// Moves the ingest's clock to `hours` after the start of hour 10.
    fn set_clock(&self, hours: u64) {
        self.clock
            .store(u64::from(HOUR_10) + hours * 3600, Ordering::Relaxed);
    }

    fn late_markers(&self) -> usize {
        files_under(&self.root.join("changes-hourly/_compact/late")).len()
    }
}

fn event_id_of(line: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(line).expect("record");
    value["eventId"].as_str().expect("eventId").to_owned()
}

/// An insert event; `n` makes the resume token unique and orders it within the second.
fn event(db: &str, coll: &str, seconds: u32, n: u32) -> String {
    let ns = serde_json::json!({"db": db, "coll": coll});
    format!(
        r#"{{"_id":{{"_data":"82{seconds:08X}{n:08X}"}},"operationType":"insert","clusterTime":{{"$timestamp":{{"t":{seconds},"i":{n}}}}},"ns":{ns},"documentKey":{{"_id":{n}}},"fullDocument":{{"_id":{n},"v":"x{n}"}}}}"#
    )
}

/// Well after hour 10 closed, and an hour after the ingest's clock starts.
fn later() -> SystemTime {
    at_hours(3)
}

/// `hours` after the start of hour 10.
fn at_hours(hours: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(HOUR_10) + hours * 3600)
}

fn all_lines(parts: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut lines: Vec<String> = parts.values().flatten().cloned().collect();
    lines.sort_by_key(|line| event_id_of(line));
    lines
}

#[tokio::test]
async fn an_hour_becomes_one_file_sorted_by_event_id_byte_for_byte() {
    let lake = Lake::new();
    let mut events: Vec<String> = (0..50)
        .map(|n| event("shop", "orders", HOUR_10 + 7, n))
        .collect();
    events.reverse();
    events.push(event("shop", "orders", HOUR_10 + 3600, 1)); // hour 11
    lake.ingest(&events).await;

    let summary = lake
        .compactor(lake.settings())
        .run_pass(PassScope::Due, later())
        .await
        .expect("pass");

    let parts = lake.parts("shop", "orders");
    let hour10 = &parts["events-20240616-10.jsonl"];
    let expected: Vec<String> = lake
        .change_lines("shop", "orders")
        .into_iter()
        .filter(|line| !line.contains(&format!("\"t\":{}", HOUR_10 + 3600)))
        .collect();
    assert_eq!(
        hour10, &expected,
        "sorted by eventId, the change files' bytes"
    );
    assert_eq!(parts["events-20240616-11.jsonl"].len(), 1);
    assert_eq!(summary.records_compacted, 51);
    assert_eq!(summary.parts_written, 2);
    assert_eq!(summary.compacted_through.as_deref(), Some("2024-06-16T11"));
}

#[tokio::test]
async fn open_hours_wait_and_given_hours_do_not() {
    let lake = Lake::new();
    lake.ingest(&[event("d", "c", HOUR_10 + 1, 1)]).await;
    let closing = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(HOUR_10) + 3600 + 600);
    let compactor = lake.compactor(lake.settings());

    let summary = compactor
        .run_pass(PassScope::Due, closing)
        .await
        .expect("pass");
    assert_eq!(
        summary.records_compacted, 0,
        "not closed until after end + delay"
    );

    let hour = EventHour::of_unix_seconds(i64::from(HOUR_10));
    let summary = compactor
        .run_pass(
            PassScope::Hours {
                first: hour,
                last: hour,
            },
            closing,
        )
        .await
        .expect("pass");
    assert_eq!(summary.records_compacted, 1);
    assert_eq!(
        lake.late_markers(),
        1,
        "the record's own marker; the pass's guard is gone"
    );
}

#[tokio::test]
async fn late_records_go_to_a_new_part_and_redeliveries_to_none() {
    for delete_sources in [false, true] {
        let lake = Lake::new();
        let first: Vec<String> = (0..5).map(|n| event("d", "c", HOUR_10 + 9, n)).collect();
        lake.ingest(&first).await;
        let settings = CompactSettings {
            enabled: true,
            delete_sources,
            ..lake.settings()
        };
        let compactor = lake.compactor(settings);
        compactor
            .run_pass(PassScope::Due, later())
            .await
            .expect("pass 1");
        assert_eq!(lake.late_markers(), 0);

        // Hours later: two new records of hour 10 and a redelivery of an old one.
        lake.set_clock(4);
        let late = vec![
            event("d", "c", HOUR_10 + 20, 100),
            event("d", "c", HOUR_10 + 1, 101),
            first[2].clone(),
        ];
        lake.ingest(&late).await;
        assert_eq!(
            lake.late_markers(),
            1,
            "the records of a closed hour stored in one minute leave one marker"
        );
        let summary = compactor
            .run_pass(PassScope::Due, at_hours(4) + Duration::from_secs(659))
            .await
            .expect("a pass within the clock margin of the marker's minute");
        assert_eq!(summary.parts_written, 1);
        assert_eq!(summary.late_markers, 0, "the marker is too young to delete");
        assert_eq!(lake.late_markers(), 1);
        let summary = compactor
            .run_pass(PassScope::Due, at_hours(4) + Duration::from_secs(660))
            .await
            .expect("pass 3");
        assert_eq!(summary.parts_written, 0, "the hour again: nothing new");
        assert_eq!(summary.late_markers, 1);
        assert_eq!(lake.late_markers(), 0);

        let parts = lake.parts("d", "c");
        assert_eq!(
            parts["events-20240616-10.jsonl"].len(),
            5,
            "a published part never changes"
        );
        let second = &parts["events-20240616-10-2.jsonl"];
        assert_eq!(second.len(), 2, "only the new records ({delete_sources})");
        assert!(event_id_of(&second[0]) < event_id_of(&second[1]));
        let lines = all_lines(&parts);
        let mut ids: Vec<String> = lines.iter().map(|l| event_id_of(l)).collect();
        ids.dedup();
        assert_eq!(ids.len(), 7, "every record once");
        if delete_sources {
            assert!(
                lake.change_lines("d", "c").is_empty(),
                "sources of finished parts go"
            );
        } else {
            assert_eq!(lake.change_lines("d", "c"), lines);
        }

        // A pass with nothing new writes nothing.
        let summary = compactor
            .run_pass(PassScope::Due, at_hours(5))
            .await
            .expect("pass 4");
        assert_eq!((summary.parts_written, summary.late_markers), (0, 0));
    }
}

#[tokio::test]
async fn two_passes_at_once_write_each_record_once() {
    let lake = Lake::new();
    let events: Vec<String> = (0..6u32)
        .flat_map(|hour| (0..30).map(move |n| event("d", "c", HOUR_10 + hour * 3600 + n, n)))
        .collect();
    lake.ingest(&events).await;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(HOUR_10) + 8 * 3600);
    let (a, b) = (
        lake.compactor(lake.settings()),
        lake.compactor(lake.settings()),
    );
    let hours = PassScope::Hours {
        first: EventHour::of_unix_seconds(i64::from(HOUR_10)),
        last: EventHour::of_unix_seconds(i64::from(HOUR_10 + 5 * 3600)),
    };
    let (one, two) = tokio::join!(a.run_pass(PassScope::Due, now), b.run_pass(hours, now));
    let (one, two) = (one.expect("timer"), two.expect("operator"));
    assert_eq!(one.records_compacted + two.records_compacted, 180);
    assert_eq!(
        all_lines(&lake.parts("d", "c")),
        lake.change_lines("d", "c")
    );
}

#[tokio::test]
async fn a_pass_stopped_at_any_operation_is_finished_by_the_next() {
    let mut stops = 0;
    for fail_at in 1.. {
        let lake = Lake::new();
        let early: Vec<String> = (0..4).map(|n| event("d", "c", HOUR_10 + n, n)).collect();
        lake.ingest(&early).await;
        let settings = CompactSettings {
            enabled: true,
            delete_sources: true,
            ..lake.settings()
        };
        lake.compactor(settings.clone())
            .run_pass(PassScope::Due, later())
            .await
            .expect("first");
        lake.set_clock(4);
        let late: Vec<String> = (10..14).map(|n| event("d", "c", HOUR_10 + n, n)).collect();
        lake.ingest(&late).await;
        lake.ingest(&[event("d", "c", HOUR_10 + 3 * 3600, 50)])
            .await; // a new hour, 13

        let stopping = Arc::new(Stopping::new(Arc::clone(&lake.sink), fail_at));
        let now = at_hours(5);
        let stopped = lake
            .compactor_on(stopping.clone(), settings.clone())
            .run_pass(PassScope::Due, now)
            .await;
        lake.compactor(settings)
            .run_pass(PassScope::Due, now)
            .await
            .expect("the next pass");

        let lines = all_lines(&lake.parts("d", "c"));
        let mut ids: Vec<String> = lines.iter().map(|l| event_id_of(l)).collect();
        let count = ids.len();
        ids.dedup();
        assert_eq!(
            (count, ids.len()),
            (9, 9),
            "stopped at operation {fail_at}: each record once"
        );
        assert_eq!(lake.late_markers(), 0, "stopped at {fail_at}");
        assert!(
            lake.change_lines("d", "c").is_empty(),
            "stopped at {fail_at}"
        );
        if stopped.is_ok() {
            break;
        }
        stops += 1;
    }
    assert!(stops > 10, "the pass has many points to stop at ({stops})");
}

#[tokio::test]
async fn hostile_names_are_compacted_under_their_encoded_folders() {
    let lake = Lake::new();
    let names = [
        ("_compact", "late"),
        ("a/b", "..\\c d"),
        ("ü", "CON"),
        (".x", "y."),
    ];
    for (n, (db, coll)) in names.iter().enumerate() {
        lake.ingest(&[event(db, coll, HOUR_10 + 5, n as u32)]).await;
    }
    lake.compactor(lake.settings())
        .run_pass(PassScope::Due, later())
        .await
        .expect("pass");
    for (db, coll) in names {
        let (db, coll) = (Segment::encode(db), Segment::encode(coll));
        let parts = lake.parts(db.as_str(), coll.as_str());
        assert_eq!(parts.len(), 1, "{db}/{coll}");
        assert_eq!(
            all_lines(&parts),
            lake.change_lines(db.as_str(), coll.as_str())
        );
    }
}

#[tokio::test]
async fn an_idle_pass_lists_state_only() {
    let lake = Lake::new();
    for hour in 0..20u32 {
        for coll in ["a", "b", "c"] {
            lake.ingest(&[event("d", coll, HOUR_10 + hour * 3600, hour)])
                .await;
        }
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(HOUR_10) + 21 * 3600);
    lake.compactor(lake.settings())
        .run_pass(PassScope::Due, now)
        .await
        .expect("first");

    let counting = Arc::new(Stopping::new(Arc::clone(&lake.sink), u64::MAX));
    let summary = lake
        .compactor_on(counting.clone(), lake.settings())
        .run_pass(PassScope::Due, now)
        .await
        .expect("idle");
    assert_eq!(summary.hours_checked, 0, "{summary:?}");
    assert_eq!(counting.operations(), 2, "the watermark and late folders");
}
