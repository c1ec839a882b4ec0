//! Late markers, the ingest's half of compaction's exactly-once argument
//! (docs/decisions.md, "Never lost"): a record stored when its hour may already have been
//! listed by a pass leaves a marker, so a later pass compacts the hour again. The mirror
//! closes hours by the same rule (docs/decisions.md, "Issue #10"), so the same record
//! leaves one marker for each pass that is on: compaction's and the mirror's.

use std::time::{Duration, SystemTime};

use super::state::{CollectionHour, StatePaths};
use crate::domain::{EventHour, LakePath, Record, Segment};

/// Clock difference allowed between the instance that ingests and the one that compacts.
const CLOCK_MARGIN_SECS: i64 = 600;
/// Longest a request takes from parsing to storing (the host ends requests at 230 s).
const REQUEST_SECS: i64 = 600;

/// Decides which records need markers and where they go.
#[derive(Debug, Clone)]
pub struct LateMarkers {
    /// The late folder of each pass that is on.
    folders: Vec<Vec<Segment>>,
    delay_secs: i64,
}

/// A pass that reads late markers, and where it keeps them.
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

#[derive(Debug, Clone)]
pub struct MarkerCandidate {
    /// Markers are needed when the clock reads this or later (Unix seconds).
    from_seconds: i64,
    pub path: LakePath,
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

    /// When preparing a record stored at `record_path`: a candidate per pass if its hour
    /// could be listed by a pass before this request ends; none otherwise.
    pub fn candidates(
        &self,
        record: &Record,
        record_path: &LakePath,
        now: SystemTime,
    ) -> Vec<MarkerCandidate> {
        let hour = EventHour::of_unix_seconds(i64::from(record.cluster_time.time));
        let from_seconds = hour
            .end_seconds()
            .saturating_add(self.delay_secs)
            .saturating_sub(CLOCK_MARGIN_SECS);
        if from_seconds > unix_seconds(now).saturating_add(REQUEST_SECS) {
            return Vec::new();
        }
        let key = CollectionHour {
            db: Segment::encode(&record.ns.db),
            coll: Segment::encode(&record.ns.coll),
            hour,
        };
        self.folders
            .iter()
            .map(|folder| MarkerCandidate {
                from_seconds,
                path: marker_path(folder, &key, record_path.file_name().clone()),
            })
            .collect()
    }
}

impl MarkerCandidate {
    /// After the record is stored: whether the marker must be written.
    pub fn is_due(&self, now: SystemTime) -> bool {
        unix_seconds(now) >= self.from_seconds
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
    fn a_late_record_gets_one_marker_for_each_pass_that_is_on() {
        let raw = raw();
        let (record, path) = record(&raw);
        let name = path.file_name().to_string();
        let delay = Duration::from_secs(600);
        let both = LateMarkers::new(segments("changes-hourly"), delay)
            .with_folder(MirrorPaths::new(segments("changes-hourly")).late_folder());
        let hours_later = at(HOUR_END + 3 * 3600);
        let markers: Vec<String> = both
            .candidates(&record, &path, hours_later)
            .iter()
            .inspect(|candidate| assert!(candidate.is_due(hours_later)))
            .map(|candidate| candidate.path.to_string())
            .collect();
        assert_eq!(
            markers,
            [
                format!("changes-hourly/_compact/late/shop/orders/2024061610/{name}"),
                format!("changes-hourly/_mirror/late/shop/orders/2024061610/{name}"),
            ]
        );
        let mirror_only =
            LateMarkers::none(delay).with_folder(MirrorPaths::new(segments("state")).late_folder());
        let markers = mirror_only.candidates(&record, &path, hours_later);
        assert_eq!(markers.len(), 1);
        assert!(markers[0]
            .path
            .to_string()
            .starts_with("state/_mirror/late/"));
        assert!(LateMarkers::none(delay).is_empty());
        assert!(LateMarkers::none(delay)
            .candidates(&record, &path, hours_later)
            .is_empty());
    }

    #[test]
    fn a_record_of_an_open_hour_needs_none_and_the_rule_is_the_same_for_both() {
        let raw = raw();
        let (record, path) = record(&raw);
        let both = LateMarkers::new(segments("c"), Duration::from_secs(600))
            .with_folder(MirrorPaths::new(segments("c")).late_folder());
        // Within the hour, and long before end + delay - margin (the request's time
        // included): no marker at all.
        assert!(both
            .candidates(&record, &path, at(HOUR_END - 1200))
            .is_empty());
        // Near the end: candidates, due only from end + delay - margin (= the hour's end).
        let candidates = both.candidates(&record, &path, at(HOUR_END - 300));
        assert_eq!(candidates.len(), 2);
        for candidate in &candidates {
            assert!(!candidate.is_due(at(HOUR_END - 1)));
            assert!(candidate.is_due(at(HOUR_END)));
        }
    }
}
