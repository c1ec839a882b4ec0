//! Hourly compaction: rolls each closed hour of change files into
//! `<root>/<db>/<coll>/year=YYYY/month=MM/day=DD/hour=HH/events-YYYYMMDD-HH.jsonl` (and
//! `.parquet`), every record exactly once (docs/decisions.md, "Issue #9").
//!
//! One pass ([`Compactor::run_pass`]) is what the timer function (`/compact`) and the
//! `handler compact` command both run. It stands on [`Sink`] alone: listing, reading,
//! write-once storing and deleting, the same on the local lake and on ADLS.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use self::part::{compact_hour, Context};
use self::state::StatePaths;
pub use self::state::{CollectionHour, NameHash};
use self::walk::{Collections, FolderCache};
use crate::domain::{EventHour, LakePath, PathLayout, Segment};
use crate::sink::{Sink, SinkError};

/// Default `COMPACT_DELAY_SECS`: an hour is closed ten minutes after it ends.
pub const DEFAULT_COMPACT_DELAY: Duration = Duration::from_secs(600);
/// Default `COMPACT_SCHEDULE` (read by the Functions host, not the handler): every 5 minutes.
pub const DEFAULT_COMPACT_SCHEDULE: &str = "0 */5 * * * *";
/// Default `COMPACT_TIME_BUDGET_SECS`: a pass starts no new hour after this, so it ends
/// well inside the host's `functionTimeout` (5 minutes in `host.json`).
pub const DEFAULT_COMPACT_TIME_BUDGET: Duration = Duration::from_secs(180);

/// Which files each compacted part is written as (`COMPACT_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    pub jsonl: bool,
    pub parquet: bool,
}

impl Formats {
    /// The file extensions of the formats on (`jsonl`, `parquet`), which are also their
    /// names in `COMPACT_FORMAT` and in claims.
    pub fn extensions(self) -> impl Iterator<Item = &'static str> {
        [(self.jsonl, "jsonl"), (self.parquet, "parquet")]
            .into_iter()
            .filter_map(|(on, extension)| on.then_some(extension))
    }

    /// `jsonl`, `parquet` or `jsonl,parquet`: as claims record them.
    pub fn list(self) -> String {
        self.extensions().collect::<Vec<_>>().join(",")
    }

    /// Reads [`Formats::list`]'s names (from a claim, or `COMPACT_FORMAT`).
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Formats, CompactError> {
        let mut formats = Formats {
            jsonl: false,
            parquet: false,
        };
        for name in names {
            match name.as_ref().trim() {
                "jsonl" => formats.jsonl = true,
                "parquet" => formats.parquet = true,
                other => {
                    return Err(CompactError::Corrupt(format!(
                        "unknown compacted format {other:?} (known: jsonl, parquet)"
                    )))
                }
            }
        }
        if !formats.jsonl && !formats.parquet {
            return Err(CompactError::Corrupt("no compacted format".to_owned()));
        }
        Ok(formats)
    }
}

impl Default for Formats {
    fn default() -> Formats {
        Formats {
            jsonl: true,
            parquet: false,
        }
    }
}

/// The compaction settings (`COMPACT_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactSettings {
    /// Passes run and the ingest writes late markers (`COMPACT_ENABLED`).
    pub enabled: bool,
    /// Where compacted files go, inside the container (`COMPACT_DIRECTORY`; default the
    /// change directory's last segment plus `-hourly`, beside it).
    pub root: Vec<Segment>,
    /// An hour is closed once `now > end of hour + delay` (`COMPACT_DELAY_SECS`).
    pub delay: Duration,
    pub formats: Formats,
    /// Delete change files once their compacted part is durable (`COMPACT_DELETE_SOURCES`).
    pub delete_sources: bool,
    /// A pass starts no new hour after this long (`COMPACT_TIME_BUDGET_SECS`).
    pub time_budget: Duration,
    /// Local folder for sort runs and parts before upload (`COMPACT_SPOOL_DIR`; default
    /// the system's temporary folder).
    pub spool_dir: PathBuf,
}

impl CompactSettings {
    /// The default root for a change directory: `mongodb/changes` -> `mongodb/changes-hourly`.
    pub fn default_root(change_directory: &[Segment]) -> Vec<Segment> {
        let mut root = change_directory.to_vec();
        let last = root
            .pop()
            .map(|segment| format!("{segment}-hourly"))
            .unwrap_or_else(|| "changes-hourly".to_owned());
        root.push(Segment::assemble(last));
        root
    }
}

/// Which hours a pass looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassScope {
    /// The timer's pass: closed hours not compacted yet, and hours with late records.
    Due,
    /// An operator's pass: these hours (`--hour`, `--from`/`--to`), closed or not.
    Hours { first: EventHour, last: EventHour },
}

/// What a pass did: the one-line JSON the command prints and the function returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PassSummary {
    /// Collection hours looked at.
    pub hours_checked: u64,
    /// Parts published (a part is one number: its JSONL and Parquet files count once).
    pub parts_written: u64,
    /// Records in those parts.
    pub records_compacted: u64,
    /// Bytes of those records (the JSONL size).
    pub bytes_compacted: u64,
    /// Late markers handled and removed.
    pub late_markers: u64,
    /// Change files deleted (`COMPACT_DELETE_SOURCES`).
    pub sources_deleted: u64,
    /// The hour every collection is compacted up to, after the pass (`YYYY-MM-DDTHH`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compacted_through: Option<String>,
    /// The time budget ended with hours left for the next pass.
    pub more_to_do: bool,
    /// Compaction is off (`COMPACT_ENABLED=false`): the pass did nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub off: bool,
    pub elapsed_ms: u64,
}

/// Why a pass stopped. Whatever it had finished stays done; the next pass continues.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("storage: {0}")]
    Storage(#[from] SinkError),
    #[error("the path template cannot be compacted: {0}")]
    Template(String),
    #[error("spool folder {path}: {source}")]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Busy(String),
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::ParquetError),
}

/// Runs compaction passes over one lake.
pub struct Compactor {
    sink: Arc<dyn Sink>,
    layout: PathLayout,
    settings: CompactSettings,
}

impl Compactor {
    pub fn is_enabled(&self) -> bool {
        self.settings.enabled
    }

    pub fn new(sink: Arc<dyn Sink>, layout: PathLayout, settings: CompactSettings) -> Compactor {
        Compactor {
            sink,
            layout,
            settings,
        }
    }

    /// One pass. `now` decides which hours are closed.
    pub async fn run_pass(
        &self,
        scope: PassScope,
        now: SystemTime,
    ) -> Result<PassSummary, CompactError> {
        let started = Instant::now();
        let mut summary = PassSummary::default();
        if !self.settings.enabled {
            summary.off = true;
            return Ok(summary);
        }
        // Claims need a store that keeps the first file at a path.
        self.sink.verify_write_once().await?;
        let paths = StatePaths::new(self.settings.root.clone());
        let context = Context {
            sink: self.sink.as_ref(),
            layout: &self.layout,
            paths: &paths,
            formats: self.settings.formats,
            delete_sources: self.settings.delete_sources,
            spool_dir: &self.settings.spool_dir,
        };
        let mut cache = FolderCache::new(self.sink.as_ref());
        let outcome = match scope {
            PassScope::Due => {
                self.due_pass(&context, &mut cache, now, started, &mut summary)
                    .await
            }
            PassScope::Hours { first, last } => {
                given_hours(&context, &mut cache, first, last, &mut summary).await
            }
        };
        summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        outcome.map(|()| summary)
    }

    /// The timer's pass: new closed hours after the watermark, then late hours.
    async fn due_pass(
        &self,
        context: &Context<'_>,
        cache: &mut FolderCache<'_>,
        now: SystemTime,
        started: Instant,
        summary: &mut PassSummary,
    ) -> Result<(), CompactError> {
        let now_seconds = late::unix_seconds(now);
        let delay = i64::try_from(self.settings.delay.as_secs()).unwrap_or(i64::MAX);
        // Closed: now > end + delay, i.e. end <= now - delay - 1.
        let last_closed = EventHour::of_unix_seconds(now_seconds - delay - 3_601);
        let over_budget = || started.elapsed() >= self.settings.time_budget;

        let mut watermarks = list_paths(context.sink, &context.paths.watermark_folder()).await?;
        let mut watermark = watermarks
            .iter()
            .filter_map(StatePaths::watermark_hour)
            .max();
        let markers = list_paths(context.sink, &context.paths.late_folder()).await?;

        // New hours, oldest first: every collection of each hour, then its watermark. The
        // first pass knows them from its one walk of the change directory; later passes
        // (`None`) walk the template for each hour.
        let mut by_hour: BTreeMap<EventHour, Option<Vec<CollectionHour>>> = BTreeMap::new();
        match watermark {
            None => {
                let mut known: BTreeMap<EventHour, Vec<CollectionHour>> = BTreeMap::new();
                for key in walk::every_hour(context.sink, context.layout).await? {
                    if key.hour <= last_closed {
                        known.entry(key.hour).or_default().push(key);
                    }
                }
                by_hour.extend(known.into_iter().map(|(hour, keys)| (hour, Some(keys))));
            }
            Some(mark) => {
                let mut hour = mark.next();
                while hour <= last_closed {
                    by_hour.insert(hour, None);
                    hour = hour.next();
                }
            }
        }
        for (hour, known) in by_hour {
            if over_budget() {
                summary.more_to_do = true;
                break;
            }
            let keys = match known {
                Some(keys) => keys,
                None => walk::folders_of_hour(context.layout, cache, hour, Collections::All)
                    .await?
                    .into_keys()
                    .collect(),
            };
            for key in &keys {
                compact_hour(context, cache, key, summary).await?;
            }
            context
                .sink
                .store_marker(context.paths.watermark(hour))
                .await?;
            watermarks.push(context.paths.watermark(hour));
            watermark = Some(hour);
        }
        if !summary.more_to_do && watermark.is_none_or(|mark| mark < last_closed) {
            // No hour had records (an empty lake): later passes still need not walk it.
            context
                .sink
                .store_marker(context.paths.watermark(last_closed))
                .await?;
            watermark = Some(last_closed);
        }

        // Late hours: those marked, closed, and not after the watermark.
        let mut late: BTreeMap<CollectionHour, Vec<LakePath>> = BTreeMap::new();
        for marker in markers {
            if let Some(key) = context.paths.late_marker_key(&marker) {
                if watermark.is_some_and(|mark| key.hour <= mark) && key.hour <= last_closed {
                    late.entry(key).or_default().push(marker);
                }
            }
        }
        for (key, markers) in late {
            if over_budget() {
                summary.more_to_do = true;
                break;
            }
            compact_hour(context, cache, &key, summary).await?;
            // `now` was read before anything was listed: markers too young for it stay,
            // and bring the hour back to the next pass.
            for marker in markers
                .iter()
                .filter(|marker| late::may_delete(marker, now))
            {
                context.sink.delete(marker).await?;
                summary.late_markers += 1;
            }
        }

        if let Some(mark) = watermark {
            // Older watermarks, listed or written by this pass, say less than `mark`.
            for old in watermarks {
                if StatePaths::watermark_hour(&old).is_some_and(|hour| hour < mark) {
                    context.sink.delete(&old).await?;
                }
            }
            summary.compacted_through = Some(mark.to_string());
        }
        Ok(())
    }
}

/// An operator's pass over given hours, closed or not. A marker of its own guards each
/// collection hour while it works, so a pass that dies half-way is finished by the timer.
async fn given_hours(
    context: &Context<'_>,
    cache: &mut FolderCache<'_>,
    first: EventHour,
    last: EventHour,
    summary: &mut PassSummary,
) -> Result<(), CompactError> {
    let mut hour = first;
    while hour <= last {
        let keys = walk::folders_of_hour(context.layout, cache, hour, Collections::All).await?;
        for key in keys.keys() {
            let guard = context.paths.late_marker(key, pass_marker_name()?);
            context.sink.store_marker(guard.clone()).await?;
            compact_hour(context, cache, key, summary).await?;
            context.sink.delete(&guard).await?;
        }
        hour = hour.next();
    }
    Ok(())
}

fn pass_marker_name() -> Result<Segment, CompactError> {
    Ok(Segment::assemble(format!("pass-{}", part::random_hex()?)))
}

/// Every file under a folder (small folders: state, claims, an hour's parts).
pub(super) async fn list_paths(
    sink: &dyn Sink,
    folder: &[Segment],
) -> Result<Vec<LakePath>, CompactError> {
    Ok(sink.list_paths(folder).await?)
}

mod late;
mod state;

pub(crate) use late::unix_seconds;
pub use late::{marker_key, marker_path, may_delete, LateMarkers, MarkerCandidate};
pub mod parquet;
mod part;
mod sort;
pub(crate) mod walk;

#[cfg(test)]
mod tests;
