//! Late markers, the ingest's half of compaction's exactly-once argument
//! (docs/decisions.md, "Never lost"): a record stored when its hour may already have been
//! listed by a pass leaves a marker, so a later pass compacts the hour again.

use std::time::{Duration, SystemTime};

use super::state::{CollectionHour, StatePaths};
use crate::domain::{EventHour, LakePath, Record, Segment};

/// Clock difference allowed between the instance that ingests and the one that compacts.
const CLOCK_MARGIN_SECS: i64 = 600;
/// Longest a request takes from parsing to storing (the host ends requests at 230 s).
const REQUEST_SECS: i64 = 600;

/// Decides which records need a marker and where it goes.
#[derive(Debug, Clone)]
pub struct LateMarkers {
    paths: StatePaths,
    delay_secs: i64,
}

/// A record that may need a marker once it is stored.
#[derive(Debug, Clone)]
pub struct MarkerCandidate {
    /// Markers are needed when the clock reads this or later (Unix seconds).
    from_seconds: i64,
    pub path: LakePath,
}

impl LateMarkers {
    pub fn new(compacted_root: Vec<Segment>, delay: Duration) -> LateMarkers {
        LateMarkers {
            paths: StatePaths::new(compacted_root),
            delay_secs: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// When preparing a record stored at `record_path`: a candidate if its hour could be
    /// listed by a pass before this request ends.
    pub fn candidate(
        &self,
        record: &Record,
        record_path: &LakePath,
        now: SystemTime,
    ) -> Option<MarkerCandidate> {
        let hour = EventHour::of_unix_seconds(i64::from(record.cluster_time.time));
        let from_seconds = hour
            .end_seconds()
            .saturating_add(self.delay_secs)
            .saturating_sub(CLOCK_MARGIN_SECS);
        if from_seconds > unix_seconds(now).saturating_add(REQUEST_SECS) {
            return None;
        }
        let key = CollectionHour {
            db: Segment::encode(&record.ns.db),
            coll: Segment::encode(&record.ns.coll),
            hour,
        };
        Some(MarkerCandidate {
            from_seconds,
            path: self
                .paths
                .late_marker(&key, record_path.file_name().clone()),
        })
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
