//! Fabric Open Mirroring (issue #10): each collection as a table in a mirrored database's
//! landing zone, kept current by passes over the change files (docs/decisions.md,
//! "Issue #10"). A pass reads the lake through one [`Sink`] and publishes into the landing
//! zone through another; neither knows which store it is.

mod change;
pub mod columns;
mod landing;
mod state;
mod table;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use self::landing::LandingPaths;
use self::state::TableKey;
use self::table::{mirror_hour, Context, TableState};
use crate::compact::walk::{every_hour, folders_of_hour, Collections, FolderCache};
use crate::compact::{may_delete, unix_seconds, CollectionHour, CompactError};
use crate::domain::{EventHour, LakePath, PathLayout, Segment};
use crate::sink::{Sink, SinkError};

pub use landing::fabric_name;
pub use state::MirrorPaths;

/// How often the timer function runs a pass by default (NCRONTAB, every minute).
pub const DEFAULT_MIRROR_SCHEDULE: &str = "0 */1 * * * *";
/// Change files one step (one data file) takes at most.
pub const DEFAULT_MAX_ROWS_PER_FILE: u64 = 20_000;
/// A pass starts no new step after this long: under the one-minute schedule.
pub const DEFAULT_MIRROR_TIME_BUDGET: Duration = Duration::from_secs(45);

/// The mirror settings (`MIRROR_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorSettings {
    /// A landing zone is configured (`MIRROR_LANDING_ZONE` or `MIRROR_LOCAL_DIR`): passes
    /// run and the ingest leaves mirror late markers.
    pub enabled: bool,
    /// The lake folder that holds `_mirror/` (the compaction root, `COMPACT_DIRECTORY`).
    pub state_root: Vec<Segment>,
    /// The landing zone's folder inside its store (`.../Files/LandingZone` on OneLake;
    /// empty for `MIRROR_LOCAL_DIR`, whose sink is rooted at the folder).
    pub landing_directory: Vec<Segment>,
    /// An hour is closed for the mirror once a pass starts after its end plus this
    /// (`COMPACT_DELAY_SECS`: the ingest's late markers follow the same rule).
    pub delay: Duration,
    /// Change files one data file takes at most (`MIRROR_MAX_ROWS_PER_FILE`).
    pub max_rows_per_file: usize,
    /// A pass starts no new step after this long (`MIRROR_TIME_BUDGET_SECS`).
    pub time_budget: Duration,
}

/// What a pass did: the one-line JSON `handler mirror` prints and the function returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorSummary {
    /// Tables (collections) that had new change files.
    pub tables: u64,
    /// Change files read for the first time.
    pub changes: u64,
    /// Rows published: upserts and deletes.
    pub upserts: u64,
    pub deletes: u64,
    /// Changes older than a state already published for their key (dropped by the
    /// order rule), and older changes of a key superseded within one step.
    pub stale: u64,
    /// Updates without `fullDocument`: not rows; listed under `_mirror/noFullDocument/`.
    pub without_full_document: u64,
    /// Data files published (including a previous pass's unfinished one).
    pub files: u64,
    /// Late markers handled and removed.
    pub late_markers: u64,
    /// The time budget ended with work left for the next pass.
    pub more_to_do: bool,
    /// No landing zone is configured: the pass did nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub off: bool,
    pub elapsed_ms: u64,
}

/// Why a pass stopped. Whatever it finished stays done; the next pass continues.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("storage: {0}")]
    Storage(#[from] SinkError),
    #[error("the path template cannot be mirrored: {0}")]
    Template(String),
    /// Mirror state or a change file that does not parse: needs a person.
    #[error("{0}")]
    Corrupt(String),
    /// Another pass is working on the same table (a lost claim race).
    #[error("{0}")]
    Busy(String),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] columns::ParquetWriteError),
}

impl MirrorError {
    /// The failure without paths (change files' paths hold `_id`s), for logs.
    pub fn cause(&self) -> String {
        match self {
            MirrorError::Storage(error) => format!("storage: {}", error.cause()),
            other => other.to_string(),
        }
    }
}

/// Runs mirror passes from one lake into one landing zone.
pub struct Mirror {
    lake: Arc<dyn Sink>,
    landing: Arc<dyn Sink>,
    layout: PathLayout,
    settings: MirrorSettings,
}

impl Mirror {
    pub fn new(
        lake: Arc<dyn Sink>,
        landing: Arc<dyn Sink>,
        layout: PathLayout,
        settings: MirrorSettings,
    ) -> Mirror {
        Mirror {
            lake,
            landing,
            layout,
            settings,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.settings.enabled
    }

    /// One pass: every change stored before `now` reaches the landing zone (unless the
    /// time budget ends first, which `more_to_do` says).
    pub async fn pass(&self, now: SystemTime) -> Result<MirrorSummary, MirrorError> {
        let started = Instant::now();
        let mut summary = MirrorSummary::default();
        if !self.settings.enabled {
            summary.off = true;
            return Ok(summary);
        }
        let outcome = self.run(now, started, &mut summary).await;
        if summary.without_full_document > 0 {
            // A count only: the names (which hold `_id`s) are listed in the lake.
            tracing::warn!(
                updates = summary.without_full_document,
                "updates without fullDocument cannot be mirrored (turn on the trigger's \"Full Document\"); listed under _mirror/noFullDocument/"
            );
        }
        summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        outcome.map(|()| summary)
    }

    async fn run(
        &self,
        now: SystemTime,
        started: Instant,
        summary: &mut MirrorSummary,
    ) -> Result<(), MirrorError> {
        let lake = self.lake.as_ref();
        // Claims need a store that keeps the first file at a path.
        lake.verify_write_once().await?;
        let paths = MirrorPaths::new(self.settings.state_root.clone());
        let landing_paths = LandingPaths::new(self.settings.landing_directory.clone());
        let start_seconds = unix_seconds(now);
        let current = EventHour::of_unix_seconds(start_seconds);
        let watermarks: Vec<EventHour> = lake
            .list_paths(&paths.watermark_folder())
            .await?
            .iter()
            .filter_map(|path| EventHour::from_compact_digits(path.file_name().as_str()))
            .collect();
        let watermark = watermarks.iter().max().copied();

        // Markers first: a folder a late record created after the walk below cached its
        // parent is then still found (the record was stored before its marker).
        let markers: Vec<LakePath> = lake.list_paths(&paths.late_folder()).await?;
        let mut marked: BTreeMap<CollectionHour, Vec<LakePath>> = BTreeMap::new();
        for marker in markers {
            if let Some(key) = paths.late_marker_key(&marker) {
                marked.entry(key).or_default().push(marker);
            }
        }

        // The open hours (every hour with change files the first time) and the hours late
        // markers name, walked hour by hour: a pass holds one hour of one table at a time.
        let open: Vec<EventHour> = match watermark {
            Some(first) => hours_between(first, current),
            None => {
                let mut hours: Vec<EventHour> = every_hour(lake, &self.layout)
                    .await?
                    .into_iter()
                    .map(|key| key.hour)
                    .chain([current])
                    .collect();
                hours.sort();
                hours.dedup();
                hours
            }
        };
        let mut hours: Vec<EventHour> = open.clone();
        hours.extend(marked.keys().map(|key| key.hour));
        hours.sort();
        hours.dedup();

        let context = Context {
            lake,
            landing: self.landing.as_ref(),
            layout: &self.layout,
            paths: &paths,
            landing_paths: &landing_paths,
            max_rows: self.settings.max_rows_per_file,
        };
        // A budget too large for the clock (the command's) is no deadline.
        let deadline = started.checked_add(self.settings.time_budget);
        let mut cache = FolderCache::new(lake);
        let mut tables: HashMap<TableKey, TableState> = HashMap::new();
        let mut failed = None;
        // The first hour not finished for every table, when the budget ends.
        let mut unfinished = None;
        'hours: for hour in hours {
            let mut found = if open.contains(&hour) {
                folders_of_hour(&self.layout, &mut cache, hour, Collections::All).await?
            } else {
                BTreeMap::new()
            };
            for key in marked.keys().filter(|key| key.hour == hour) {
                let one = Collections::One {
                    db: &key.db,
                    coll: &key.coll,
                };
                found.extend(folders_of_hour(&self.layout, &mut cache, hour, one).await?);
            }
            // A marked hour whose folders are gone has nothing left to mirror.
            for (key, markers) in marked.iter().filter(|(key, _)| key.hour == hour) {
                if !found.contains_key(key) {
                    for marker in markers.iter().filter(|marker| may_delete(marker, now)) {
                        lake.delete(marker).await?;
                        summary.late_markers += 1;
                    }
                }
            }
            for (key, folders) in found {
                let table = TableKey {
                    db: key.db.clone(),
                    coll: key.coll.clone(),
                };
                let outcome = mirror_hour(
                    &context,
                    &mut tables,
                    &table,
                    hour,
                    &folders,
                    deadline,
                    summary,
                )
                .await;
                match outcome {
                    Ok(true) => {
                        // Markers too young for this pass's clock stay for the next.
                        let markers = marked.get(&key).into_iter().flatten();
                        for marker in markers.filter(|marker| may_delete(marker, now)) {
                            lake.delete(marker).await?;
                            summary.late_markers += 1;
                        }
                    }
                    Ok(false) => {
                        summary.more_to_do = true;
                        unfinished = Some(hour);
                        break 'hours;
                    }
                    // One table's failure (a lost claim race, a change file that does not
                    // parse) does not hold the others back: a marker brings its hour back
                    // to the next pass, so the watermark can still move on.
                    Err(error) => {
                        tracing::warn!(table = %LandingPaths::table_name(&table), hour = %hour.compact_digits(), error = %error.cause(), "mirror: a table hour is left for the next pass");
                        let retry = paths.late_marker(&key, Segment::assemble("_retry".to_owned()));
                        lake.store_marker(retry).await?;
                        failed.get_or_insert(error);
                    }
                }
            }
        }

        // The hours closed when this pass started, and finished by it for every table,
        // stay closed: later records of them carry late markers.
        let delay = i64::try_from(self.settings.delay.as_secs()).unwrap_or(i64::MAX);
        let mut first_open = EventHour::of_unix_seconds(start_seconds.saturating_sub(delay));
        if let Some(hour) = unfinished {
            first_open = first_open.min(hour);
        }
        if watermark.is_none_or(|old| first_open > old) {
            lake.store_marker(paths.watermark(first_open)).await?;
            for old in watermarks.iter().filter(|old| **old < first_open) {
                lake.delete(&paths.watermark(*old)).await?;
            }
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// `first..=last` (none when `first` is later).
fn hours_between(first: EventHour, last: EventHour) -> Vec<EventHour> {
    let mut hours = Vec::new();
    let mut hour = first;
    while hour <= last {
        hours.push(hour);
        hour = hour.next();
    }
    hours
}

/// The template walk is shared with compaction and speaks its errors.
impl From<CompactError> for MirrorError {
    fn from(error: CompactError) -> MirrorError {
        match error {
            CompactError::Storage(error) => MirrorError::Storage(error),
            CompactError::Template(reason) => MirrorError::Template(reason),
            other => MirrorError::Corrupt(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
