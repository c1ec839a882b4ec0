//! Late markers, the ingest's half of compaction's exactly-once argument
//! (docs/decisions.md, "Never lost", amended by "late markers named by arrival minute"): a
//! record stored when its hour may already have been listed by a pass leaves a marker, so a
//! later pass takes the hour again. The mirror closes hours by the same rule
//! (docs/decisions.md, "Issue #10"), so records leave markers for each pass that is on:
//! compaction's and the mirror's.
//!
//! A marker is named by the minute the ingest's clock read after storing
//! (`arrived-YYYYMMDDHHMM`), so every late record of a collection hour stored in one minute
//! shares it: a snapshot, whose records are all late, writes a few markers per minute
//! instead of one per document. A pass may delete such a marker only once it is old enough
//! that every record sharing it was visible before the pass listed anything
//! ([`may_delete`]).

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::state::{CollectionHour, StatePaths};
use crate::domain::{EventHour, LakePath, Record, Segment};

/// Clock difference allowed between the instance that ingests and the one that compacts.
const CLOCK_MARGIN_SECS: i64 = 600;
/// Longest a request takes from parsing to storing (the host ends requests at 230 s).
const REQUEST_SECS: i64 = 600;
/// The start of an arrival marker's name.
const ARRIVED: &str = "arrived-";

/// Decides which records need markers and where they go, and remembers the markers this
/// process wrote in the current minute (a marker is written once per minute, not once
/// per record).
#[derive(Debug, Clone)]
pub struct LateMarkers {
    /// The late folder of each pass that is on.
    folders: Vec<Vec<Segment>>,
    delay_secs: i64,
    written: Arc<Mutex<WrittenThisMinute>>,
}

/// The markers stored in one minute (the minute is in their names: older ones are never
/// asked for again, so the set is emptied when the minute changes).
#[derive(Debug, Default)]
struct WrittenThisMinute {
    minute: i64,
    paths: HashSet<LakePath>,
}

/// `<late folder>/<db>/<coll>/<YYYYMMDDHH>/<name>`: the one shape of a late marker, for
/// every pass that reads them (compaction's `_compact/late`, the mirror's `_mirror/late`).
pub fn marker_path(late_folder: &[Segment], key: &CollectionHour, name: Segment) -> LakePath {
    let mut segments = late_folder.to_vec();
    segments.extend([
        key.db.clone(),
        key.coll.clone(),
        Segment::assemble(key.hour.compact_digits()),
        name,
    ]);
    LakePath::new(segments).unwrap_or_else(|| unreachable!("a path with a name"))
}

/// The collection hour a marker under `late_folder` names ([`marker_path`] read back).
pub fn marker_key(late_folder: &[Segment], path: &LakePath) -> Option<CollectionHour> {
    match path.segments().strip_prefix(late_folder)? {
        [db, coll, hour, _name] => Some(CollectionHour {
            db: db.clone(),
            coll: coll.clone(),
            hour: EventHour::from_compact_digits(hour.as_str())?,
        }),
        _ => None,
    }
}

/// Whether a pass whose clock read `pass_clock` before it listed anything may delete
/// `marker` once it has finished the marker's hour. An arrival marker: only when its
/// minute ended [`CLOCK_MARGIN_SECS`] before, so every record sharing it was visible
/// before the pass listed the hour (docs/decisions.md). Any other marker (a per-record
/// marker of an earlier version, an operator's guard, the mirror's retry marker) names
/// nothing that can arrive after it was listed.
pub fn may_delete(marker: &LakePath, pass_clock: SystemTime) -> bool {
    match arrival_minute(marker.file_name().as_str()) {
        Some(minute_start) => {
            minute_start.saturating_add(60 + CLOCK_MARGIN_SECS) <= unix_seconds(pass_clock)
        }
        None => true,
    }
}

/// `arrived-YYYYMMDDHHMM` for the minute holding `seconds`.
fn arrival_name(seconds: i64) -> Segment {
    let hour = EventHour::of_unix_seconds(seconds);
    let minute = (seconds - hour.start_seconds()) / 60;
    Segment::assemble(format!("{ARRIVED}{}{minute:02}", hour.compact_digits()))
}

/// The start (Unix seconds) of the minute an arrival marker's name gives.
fn arrival_minute(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(ARRIVED)?;
    if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hour = EventHour::from_compact_digits(&digits[..10])?;
    let minute: i64 = digits[10..].parse().ok()?;
    (minute < 60).then(|| hour.start_seconds() + minute * 60)
}

/// A record that may need markers: its collection hour, and from when.
#[derive(Debug, Clone)]
pub struct MarkerCandidate {
    /// Markers are needed when the clock reads this or later (Unix seconds).
    from_seconds: i64,
    key: CollectionHour,
}

/// The markers a request must store, read off the clock after its records were stored.
#[derive(Debug, Default)]
pub struct DueMarkers {
    minute: i64,
    pub paths: Vec<LakePath>,
}

impl LateMarkers {
    /// Compaction's markers, under `compacted_root`.
    pub fn new(compacted_root: Vec<Segment>, delay: Duration) -> LateMarkers {
        LateMarkers::none(delay).with_compaction(compacted_root)
    }

    /// No marker yet: add the passes that are on. `delay` closes an hour for all of them
    /// (`COMPACT_DELAY_SECS`).
    pub fn none(delay: Duration) -> LateMarkers {
        LateMarkers {
            folders: Vec::new(),
            delay_secs: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            written: Arc::default(),
        }
    }

    pub fn with_compaction(self, compacted_root: Vec<Segment>) -> LateMarkers {
        self.with_folder(StatePaths::new(compacted_root).late_folder())
    }

    /// Markers for another pass, in its late folder (the mirror's).
    pub fn with_folder(mut self, late_folder: Vec<Segment>) -> LateMarkers {
        self.folders.push(late_folder);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.folders.is_empty()
    }

    /// When preparing a record: a candidate if its hour could be listed by a pass before
    /// this request ends; none otherwise.
    pub fn candidate(&self, record: &Record, now: SystemTime) -> Option<MarkerCandidate> {
        let hour = EventHour::of_unix_seconds(i64::from(record.cluster_time.time));
        let from_seconds = hour
            .end_seconds()
            .saturating_add(self.delay_secs)
            .saturating_sub(CLOCK_MARGIN_SECS);
        (from_seconds <= unix_seconds(now).saturating_add(REQUEST_SECS)).then(|| MarkerCandidate {
            from_seconds,
            key: CollectionHour {
                db: Segment::encode(&record.ns.db),
                coll: Segment::encode(&record.ns.coll),
                hour,
            },
        })
    }

    /// After the records are stored, the clock reading `now`: the markers to store, one
    /// per pass and collection hour whose time has come, less those this process stored
    /// in the same minute already.
    pub fn due(&self, candidates: &[MarkerCandidate], now: SystemTime) -> DueMarkers {
        let seconds = unix_seconds(now);
        let minute = seconds.div_euclid(60);
        let name = arrival_name(seconds);
        let keys: BTreeSet<&CollectionHour> = candidates
            .iter()
            .filter(|candidate| seconds >= candidate.from_seconds)
            .map(|candidate| &candidate.key)
            .collect();
        let written = self.lock();
        let paths = keys
            .into_iter()
            .flat_map(|key| {
                self.folders
                    .iter()
                    .map(|folder| marker_path(folder, key, name.clone()))
            })
            .filter(|path| written.minute != minute || !written.paths.contains(path))
            .collect();
        DueMarkers { minute, paths }
    }

    /// Remembers markers stored (so later requests of the same minute skip them).
    pub fn stored(&self, due: DueMarkers) {
        let mut written = self.lock();
        if due.minute < written.minute {
            // A slow request of a minute gone: its names are never asked for again.
            return;
        }
        if due.minute > written.minute {
            *written = WrittenThisMinute {
                minute: due.minute,
                paths: HashSet::new(),
            };
        }
        written.paths.extend(due.paths);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WrittenThisMinute> {
        // A panic while holding the lock leaves a set of paths, still true.
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChangeEvent, PathLayout, DEFAULT_TEMPLATE};
    use crate::mirror::MirrorPaths;
    use serde_json::value::RawValue;

    /// An insert into `shop.orders` at 2024-06-16T10:00:05Z.
    const EVENT: &str = r#"{"_id":{"_data":"82AA"},"operationType":"insert","clusterTime":{"$timestamp":{"t":1718532005,"i":1}},"ns":{"db":"shop","coll":"orders"},"documentKey":{"_id":1},"fullDocument":{"_id":1}}"#;
    const HOUR_END: u64 = 1_718_535_600;

    fn segments(path: &str) -> Vec<Segment> {
        path.split('/')
            .map(|part| Segment::literal(part).expect("segment"))
            .collect()
    }

    /// The event's record (borrowing `raw`) and its path.
    fn record(raw: &RawValue) -> (Record<'_>, LakePath) {
        let ChangeEvent::Data(change) = ChangeEvent::parse(raw).expect("event") else {
            panic!("a data change");
        };
        let record = Record::try_from(*change).expect("record");
        let layout = PathLayout::new(segments("changes"), DEFAULT_TEMPLATE, None).expect("layout");
        let path = layout.path_for(&record);
        (record, path)
    }

    fn raw() -> Box<RawValue> {
        RawValue::from_string(EVENT.to_owned()).expect("JSON")
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn late_records_of_one_minute_share_one_marker_for_each_pass_that_is_on() {
        let raw = raw();
        let (record, _) = record(&raw);
        let delay = Duration::from_secs(600);
        let both = LateMarkers::new(segments("changes-hourly"), delay)
            .with_folder(MirrorPaths::new(segments("changes-hourly")).late_folder());
        // 14:07:30, three hours after the end of the record's hour.
        let later = at(HOUR_END + 3 * 3600 + 7 * 60 + 30);
        let candidates: Vec<MarkerCandidate> = (0..3)
            .map(|_| both.candidate(&record, later).expect("late"))
            .collect();
        let due = both.due(&candidates, later);
        let markers: Vec<String> = due.paths.iter().map(ToString::to_string).collect();
        assert_eq!(
            markers,
            [
                "changes-hourly/_compact/late/shop/orders/2024061610/arrived-202406161407",
                "changes-hourly/_mirror/late/shop/orders/2024061610/arrived-202406161407",
            ]
        );
        // Stored: later requests of the same minute need none; the next minute needs its own.
        both.stored(due);
        assert!(both
            .due(&candidates, later + Duration::from_secs(29))
            .paths
            .is_empty());
        let next_minute = both.due(&candidates, later + Duration::from_secs(30));
        assert_eq!(next_minute.paths.len(), 2);
        assert!(next_minute.paths[0]
            .to_string()
            .ends_with("/arrived-202406161408"));
        // A failed store is not remembered: the retry writes the markers again.
        let other = LateMarkers::new(segments("changes-hourly"), delay);
        let _unstored = other.due(&candidates, later);
        assert_eq!(other.due(&candidates, later).paths.len(), 1);

        let mirror_only =
            LateMarkers::none(delay).with_folder(MirrorPaths::new(segments("state")).late_folder());
        let due = mirror_only.due(&candidates, later);
        assert_eq!(due.paths.len(), 1);
        assert!(due.paths[0].to_string().starts_with("state/_mirror/late/"));
        assert!(LateMarkers::none(delay).is_empty());
        assert!(LateMarkers::none(delay)
            .due(&candidates, later)
            .paths
            .is_empty());
    }

    #[test]
    fn a_record_of_an_open_hour_needs_none_and_the_rule_is_the_same_for_both() {
        let raw = raw();
        let (record, _) = record(&raw);
        let both = LateMarkers::new(segments("c"), Duration::from_secs(600))
            .with_folder(MirrorPaths::new(segments("c")).late_folder());
        // Within the hour, and long before end + delay - margin (the request's time
        // included): no marker at all.
        assert!(both.candidate(&record, at(HOUR_END - 1200)).is_none());
        // Near the end: a candidate, due only from end + delay - margin (= the hour's end).
        let candidate = both.candidate(&record, at(HOUR_END - 300)).expect("near");
        let candidates = [candidate];
        assert!(both.due(&candidates, at(HOUR_END - 1)).paths.is_empty());
        assert_eq!(both.due(&candidates, at(HOUR_END)).paths.len(), 2);
    }

    #[test]
    fn a_pass_deletes_an_arrival_marker_only_when_its_minute_ended_a_clock_margin_before() {
        let key = CollectionHour {
            db: Segment::encode("shop"),
            coll: Segment::encode("orders"),
            hour: EventHour::of_unix_seconds(1_718_532_005),
        };
        let late = segments("c/_compact/late");
        // Written during 11:07 (any second of it).
        let minute_start = HOUR_END + 7 * 60;
        let marker = marker_path(&late, &key, arrival_name(minute_start as i64 + 59));
        assert!(marker.to_string().ends_with("/arrived-202406161107"));
        assert_eq!(marker_key(&late, &marker), Some(key.clone()));
        let deletable_from = minute_start + 60 + 600;
        assert!(!may_delete(&marker, at(minute_start)));
        assert!(!may_delete(&marker, at(deletable_from - 1)));
        assert!(may_delete(&marker, at(deletable_from)));
        // Markers of other names (earlier versions' per-record markers, guards, retries)
        // are deleted once their hour is done, as before.
        for name in [
            "1718532005-1-1-abc.json",
            "pass-00ff",
            "_retry",
            "arrived-2024",
        ] {
            let other = marker_path(&late, &key, Segment::assemble(name.to_owned()));
            assert!(may_delete(&other, at(minute_start)), "{name}");
        }
    }
}
