//! One table's part of a pass: finish the last step if a pass stopped inside it, find the
//! change files not handled yet, and publish them in bounded steps (docs/decisions.md,
//! "Issue #10").

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use futures_util::TryStreamExt;

use super::change::{ChangeKind, MirrorChange};
use super::columns::{write_parquet, MirrorRow, RowChange};
use super::landing::{LandingPaths, METADATA};
use super::state::{
    parse_log, parse_number, Claim, ClaimHeader, KeyHash, MirrorPaths, Outcome, StepLine, TableKey,
    TablePaths,
};
use super::{MirrorError, MirrorSummary};
use crate::compact::NameHash;
use crate::domain::{EventHour, LakePath, PathLayout, Segment};
use crate::sink::{LakeFile, Sink, SinkError, Stored};

/// Log files read at once: an hour's logs can hold a line per change file of the hour.
const LOGS_AT_ONCE: usize = 8;
/// Change-file bytes one step reads at most (a step takes at least one file): with the
/// documents parsed and their Arrow columns, a step holds a few times this.
const STEP_BYTES: u64 = 32 * 1024 * 1024;

/// What a table's work needs from the pass.
pub(super) struct Context<'a> {
    pub lake: &'a dyn Sink,
    pub landing: &'a dyn Sink,
    pub layout: &'a PathLayout,
    pub paths: &'a MirrorPaths,
    pub landing_paths: &'a LandingPaths,
    pub max_rows: usize,
}

/// What a pass knows of a table once it has loaded its state.
#[derive(Debug, Clone)]
pub(super) struct TableState {
    loaded: Loaded,
    /// The table had new change files in this pass (for the summary's count).
    touched: bool,
}

/// Mirrors the new change files of one table's `hour` (in `folders`). `Ok(false)`: the
/// deadline came first. The table's state is loaded on its first hour in a pass and kept
/// in `tables` while its steps succeed.
pub(super) async fn mirror_hour(
    context: &Context<'_>,
    tables: &mut HashMap<TableKey, TableState>,
    table: &TableKey,
    hour: EventHour,
    folders: &[Vec<Segment>],
    deadline: Option<Instant>,
    summary: &mut MirrorSummary,
) -> Result<bool, MirrorError> {
    let paths = context.paths.table(table);
    let mut state = match tables.remove(table) {
        Some(state) => state,
        None => TableState {
            loaded: load_state(context, table, &paths, summary).await?,
            touched: false,
        },
    };
    let done = done_names(context, &paths, hour).await?;
    let new = new_change_files(context, hour, folders, &done).await?;
    if !new.is_empty() && !state.touched {
        state.touched = true;
        summary.tables += 1;
    }
    for chunk in steps_of(&new, context.max_rows) {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            tables.insert(table.clone(), state);
            return Ok(false);
        }
        let header = match state.loaded {
            Loaded::Header(header) => header,
            // Gone: another pass finished two more steps since this one looked.
            Loaded::Finished(step) => match read_claim(context, &paths, step).await {
                Err(MirrorError::Storage(SinkError::NotFound { .. })) => {
                    return Err(MirrorError::Busy(format!(
                        "another pass moved table {} on while this pass ran",
                        LandingPaths::table_name(table)
                    )))
                }
                other => other?.header,
            },
        };
        state.loaded =
            Loaded::Header(step(context, table, &paths, header, folders, chunk, summary).await?);
    }
    tables.insert(table.clone(), state);
    Ok(true)
}

/// A table's state as a pass first meets it: the latest step is finished (finishing it
/// first if a pass stopped inside it), and its header is read only once there is work.
#[derive(Debug, Clone)]
enum Loaded {
    Header(ClaimHeader),
    /// The latest claim's number: its header is the state, not read yet.
    Finished(u64),
}

async fn load_state(
    context: &Context<'_>,
    table: &TableKey,
    paths: &TablePaths,
    summary: &mut MirrorSummary,
) -> Result<Loaded, MirrorError> {
    let latest = context
        .lake
        .list_paths(&paths.claims_folder())
        .await?
        .iter()
        .filter_map(|path| parse_number(path.file_name()))
        .max();
    let Some(step) = latest else {
        return Ok(Loaded::Header(ClaimHeader {
            next_file: 1,
            ..ClaimHeader::default()
        }));
    };
    if is_present(context.lake, &paths.published(step)).await? {
        return Ok(Loaded::Finished(step));
    }
    let claim = read_claim(context, paths, step).await?;
    let rows = rebuild_rows(context, &claim).await?;
    finish_step(context, table, paths, &claim, &rows, true, summary).await?;
    Ok(Loaded::Header(claim.header))
}

async fn read_claim(
    context: &Context<'_>,
    paths: &TablePaths,
    step: u64,
) -> Result<Claim, MirrorError> {
    let path = paths.claim(step);
    Claim::parse(&context.lake.read(&path).await?, &path)
}

/// The rows of a claimed step, read again from its change files: the same rows in the
/// same order as when it was claimed, so the data file has the same bytes.
async fn rebuild_rows(context: &Context<'_>, claim: &Claim) -> Result<Vec<MirrorRow>, MirrorError> {
    let mut wanted: Vec<&StepLine> = claim
        .lines
        .iter()
        .filter(|line| line.outcome == Outcome::Row)
        .collect();
    wanted.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let paths = wanted.iter().map(|line| line.path.clone()).collect();
    let changes = read_changes(context, paths).await?;
    Ok(changes.into_iter().filter_map(into_row).collect())
}

/// Reads and parses change files, in order. A listed file that is gone is an error: the
/// change it held cannot reach the table.
async fn read_changes(
    context: &Context<'_>,
    paths: Vec<LakePath>,
) -> Result<Vec<MirrorChange>, MirrorError> {
    let results = context.lake.read_all(paths).await;
    let mut changes = Vec::with_capacity(results.len());
    for result in results {
        let bytes = result.map_err(|error| match error {
            SinkError::NotFound { .. } => MirrorError::Corrupt(format!(
                "a change file the mirror must read is gone (deleted by hand? COMPACT_DELETE_SOURCES?): {}",
                error.cause()
            )),
            other => MirrorError::Storage(other),
        })?;
        let change = MirrorChange::parse(&bytes).map_err(|error| {
            MirrorError::Corrupt(format!("a change file cannot be mirrored: {error}"))
        })?;
        changes.push(change);
    }
    Ok(changes)
}

fn into_row(change: MirrorChange) -> Option<MirrorRow> {
    let row = match change.kind {
        ChangeKind::Upsert(document) => RowChange::Upsert(document),
        ChangeKind::Delete => RowChange::Delete,
        ChangeKind::NoFullDocument => return None,
    };
    Some(MirrorRow {
        key: change.key,
        change: row,
    })
}

/// Runs `visit` on every line of the logs in `folder`, reading a few files at a time.
async fn each_log_line(
    context: &Context<'_>,
    folder: &[Segment],
    mut visit: impl FnMut(StepLine),
) -> Result<(), MirrorError> {
    let logs = context.lake.list_paths(folder).await?;
    for batch in logs.chunks(LOGS_AT_ONCE) {
        let texts = context.lake.read_all(batch.to_vec()).await;
        for (path, text) in batch.iter().zip(texts) {
            for line in parse_log(&text?, path)? {
                visit(line);
            }
        }
    }
    Ok(())
}

/// The names of the change files of `hour` already handled (16 bytes each).
async fn done_names(
    context: &Context<'_>,
    paths: &TablePaths,
    hour: EventHour,
) -> Result<HashSet<NameHash>, MirrorError> {
    let mut done = HashSet::new();
    each_log_line(context, &paths.hour_logs_folder(hour), |line| {
        done.insert(NameHash::of(line.path.file_name()));
    })
    .await?;
    Ok(done)
}

/// A change file not handled yet: its folder (an index into the hour's folders) and
/// name, not its whole path, so an hour of a million new files stays small.
struct NewFile {
    hour: EventHour,
    folder: usize,
    name: Segment,
    size: u64,
}

impl NewFile {
    fn path(&self, folders: &[Vec<Segment>]) -> LakePath {
        let mut segments = folders[self.folder].clone();
        segments.push(self.name.clone());
        LakePath::new(segments).unwrap_or_else(|| unreachable!("a path with a name"))
    }
}

/// `files` cut into steps of at most `max_rows` files and [`STEP_BYTES`] bytes.
fn steps_of(files: &[NewFile], max_rows: usize) -> Vec<&[NewFile]> {
    let mut steps = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, file) in files.iter().enumerate() {
        let full = index - start >= max_rows.max(1) || bytes + file.size > STEP_BYTES;
        if full && index > start {
            steps.push(&files[start..index]);
            start = index;
            bytes = 0;
        }
        bytes += file.size;
    }
    if start < files.len() {
        steps.push(&files[start..]);
    }
    steps
}

/// The change files of `hour` in `folders` not in `done`, in name order (event time
/// order).
async fn new_change_files(
    context: &Context<'_>,
    hour: EventHour,
    folders: &[Vec<Segment>],
    done: &HashSet<NameHash>,
) -> Result<Vec<NewFile>, MirrorError> {
    let mut new = Vec::new();
    for (index, folder) in folders.iter().enumerate() {
        let mut pages = context.lake.list(folder);
        while let Some(page) = pages.try_next().await? {
            for listed in page {
                let (path, size) = (listed.path, listed.size);
                let of_hour = path.parent_segments() == folder.as_slice()
                    && context
                        .layout
                        .seconds_from_name(path.file_name())
                        .is_some_and(|s| EventHour::of_unix_seconds(i64::from(s)) == hour);
                if of_hour && !done.contains(&NameHash::of(path.file_name())) {
                    new.push(NewFile {
                        hour,
                        folder: index,
                        name: path.file_name().clone(),
                        size,
                    });
                }
            }
        }
    }
    new.sort_by(|a, b| a.name.cmp(&b.name).then(a.folder.cmp(&b.folder)));
    new.dedup_by(|a, b| a.name == b.name && a.folder == b.folder);
    Ok(new)
}

/// The greatest `eventId` published (or dropped as stale) for each of `keys`, from the
/// logs of `from` onward: a greater `eventId` of a key can only be in those hours.
async fn applied_event_ids(
    context: &Context<'_>,
    paths: &TablePaths,
    keys: &HashSet<KeyHash>,
    from: EventHour,
) -> Result<HashMap<KeyHash, String>, MirrorError> {
    let mut greatest: HashMap<KeyHash, String> = HashMap::new();
    let mut hours: Vec<EventHour> = context
        .lake
        .folders(&paths.logs_folder())
        .await?
        .iter()
        .filter_map(|name| EventHour::from_compact_digits(name.as_str()))
        .filter(|hour| *hour >= from)
        .collect();
    hours.sort();
    for hour in hours {
        each_log_line(context, &paths.hour_logs_folder(hour), |line| {
            if line.outcome.is_ordered() && keys.contains(&line.key) {
                let entry = greatest.entry(line.key).or_default();
                if line.event_id > *entry {
                    *entry = line.event_id;
                }
            }
        })
        .await?;
    }
    Ok(greatest)
}

/// One step: read the files, decide each change by the order rule, claim the step, publish.
async fn step(
    context: &Context<'_>,
    table: &TableKey,
    paths: &TablePaths,
    state: ClaimHeader,
    folders: &[Vec<Segment>],
    files: &[NewFile],
    summary: &mut MirrorSummary,
) -> Result<ClaimHeader, MirrorError> {
    let changes = read_changes(context, files.iter().map(|f| f.path(folders)).collect()).await?;
    summary.changes += changes.len() as u64;
    let keys: Vec<KeyHash> = changes.iter().map(|c| key_hash(&c.key)).collect();

    // Only a change no newer than everything published needs a look-up.
    let mut look_up = HashSet::new();
    let mut from: Option<EventHour> = None;
    for ((change, file), key) in changes.iter().zip(files).zip(&keys) {
        if !matches!(change.kind, ChangeKind::NoFullDocument) && change.event_id <= state.highest {
            look_up.insert(*key);
            from = Some(from.map_or(file.hour, |f| f.min(file.hour)));
        }
    }
    let applied = match from {
        Some(from) => applied_event_ids(context, paths, &look_up, from).await?,
        None => HashMap::new(),
    };

    // The greatest ordered change per key in this step, if it beats what was applied.
    let mut winner: HashMap<KeyHash, usize> = HashMap::new();
    for (index, change) in changes.iter().enumerate() {
        if matches!(change.kind, ChangeKind::NoFullDocument) {
            continue;
        }
        let best = winner.entry(keys[index]).or_insert(index);
        if change.event_id > changes[*best].event_id {
            *best = index;
        }
    }
    let mut outcomes = vec![Outcome::Stale; changes.len()];
    for (index, change) in changes.iter().enumerate() {
        if matches!(change.kind, ChangeKind::NoFullDocument) {
            outcomes[index] = Outcome::NoFullDocument;
        }
    }
    for (key, index) in &winner {
        let beats = applied
            .get(key)
            .is_none_or(|greatest| changes[*index].event_id > *greatest);
        if beats {
            outcomes[*index] = Outcome::Row;
        }
    }

    let lines: Vec<StepLine> = files
        .iter()
        .zip(&changes)
        .zip(&keys)
        .zip(&outcomes)
        .map(|(((file, change), key), outcome)| StepLine {
            hour: file.hour,
            path: file.path(folders),
            event_id: change.event_id.clone(),
            key: *key,
            outcome: *outcome,
        })
        .collect();
    let mut row_changes: Vec<MirrorChange> = changes
        .into_iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| **outcome == Outcome::Row)
        .map(|(change, _)| change)
        .collect();
    row_changes.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    let highest = row_changes
        .last()
        .map(|c| c.event_id.clone())
        .filter(|id| *id > state.highest)
        .unwrap_or(state.highest);
    let rows: Vec<MirrorRow> = row_changes.into_iter().filter_map(into_row).collect();
    let mut columns = state.columns;
    columns.extend_for(&rows);
    let file = (!rows.is_empty()).then_some(state.next_file);
    let claim = Claim {
        header: ClaimHeader {
            step: state.step + 1,
            file,
            next_file: state.next_file + u64::from(file.is_some()),
            columns,
            highest,
        },
        lines,
    };
    let claimed = context
        .lake
        .store_one(LakeFile {
            path: paths.claim(claim.header.step),
            contents: claim.to_text(),
        })
        .await?;
    // A claim can only be new while its step was never finished: old claims are
    // deleted, `published` markers never are. A pass that loaded its state long ago
    // may find a deleted claim's number free; it must not take it again.
    let reused = claimed == Stored::Written
        && is_present(context.lake, &paths.published(claim.header.step)).await?;
    if reused {
        context.lake.delete(&paths.claim(claim.header.step)).await?;
    }
    if claimed == Stored::AlreadyPresent || reused {
        return Err(MirrorError::Busy(format!(
            "another pass took step {} of table {}; this pass leaves the table to it",
            claim.header.step,
            LandingPaths::table_name(table)
        )));
    }
    finish_step(context, table, paths, &claim, &rows, false, summary).await?;
    for outcome in &outcomes {
        match outcome {
            Outcome::Row => {}
            Outcome::Stale => summary.stale += 1,
            Outcome::NoFullDocument => summary.without_full_document += 1,
        }
    }
    for row in &rows {
        match row.change {
            RowChange::Upsert(_) => summary.upserts += 1,
            RowChange::Delete => summary.deletes += 1,
        }
    }
    Ok(claim.header)
}

/// Publishes a claimed step: the data file (after `_metadata.json` for the first), the
/// per-hour logs, the list of updates without a full document, then `published/<step>`.
/// Every write is write-once, so finishing a step twice does nothing the second time.
async fn finish_step(
    context: &Context<'_>,
    table: &TableKey,
    paths: &TablePaths,
    claim: &Claim,
    rows: &[MirrorRow],
    recovering: bool,
    summary: &mut MirrorSummary,
) -> Result<(), MirrorError> {
    let header = &claim.header;
    if let Some(number) = header.file {
        if number == 1 {
            context
                .landing
                .store_one(LakeFile {
                    path: context.landing_paths.metadata(table),
                    contents: METADATA.to_vec(),
                })
                .await?;
        }
        // Recovering, the file may be out already, or even applied and moved by Fabric
        // (moves go one way: look in place first, then among the processed files).
        let taken = recovering
            && (is_present(
                context.landing,
                &context.landing_paths.data_file(table, number),
            )
            .await?
                || is_present(
                    context.landing,
                    &context.landing_paths.processed_file(table, number),
                )
                .await?);
        if !taken {
            let contents = write_parquet(&header.columns, rows)?;
            let stored = context
                .landing
                .store_one(LakeFile {
                    path: context.landing_paths.data_file(table, number),
                    contents,
                })
                .await?;
            if stored == Stored::Written {
                summary.files += 1;
            }
        }
    }
    let mut state_files: Vec<LakeFile> = claim
        .hours()
        .into_iter()
        .map(|hour| LakeFile {
            path: paths.hour_log(hour, header.step),
            contents: claim.hour_log_text(hour),
        })
        .collect();
    state_files.extend(
        claim
            .lines
            .iter()
            .filter(|line| line.outcome == Outcome::NoFullDocument)
            .map(|line| LakeFile {
                path: context
                    .paths
                    .no_full_document(table, line.path.file_name().clone()),
                contents: Vec::new(),
            }),
    );
    for result in context.lake.store_all(state_files).await {
        result?;
    }
    context
        .lake
        .store_marker(paths.published(header.step))
        .await?;
    // The latest two claims are kept: the latest is the table's state, the one before
    // it may still be read by a pass that listed the claims just before this one. The
    // empty `published` markers stay: they tell a slow pass that a number is taken.
    if let Some(old) = header.step.checked_sub(2).filter(|old| *old > 0) {
        context.lake.delete(&paths.claim(old)).await?;
    }
    Ok(())
}

async fn is_present(sink: &dyn Sink, path: &LakePath) -> Result<bool, MirrorError> {
    match sink.read(path).await {
        Ok(_) => Ok(true),
        Err(SinkError::NotFound { .. }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// A key's 128-bit hash, as claims and logs hold it.
fn key_hash(key: &str) -> KeyHash {
    NameHash::of_text(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(sizes: &[u64]) -> Vec<NewFile> {
        sizes
            .iter()
            .enumerate()
            .map(|(n, size)| NewFile {
                hour: EventHour::of_unix_seconds(0),
                folder: 0,
                name: Segment::encode(&n.to_string()),
                size: *size,
            })
            .collect()
    }

    #[test]
    fn steps_are_bounded_by_files_and_by_bytes() {
        let lengths = |steps: Vec<&[NewFile]>| steps.iter().map(|s| s.len()).collect::<Vec<_>>();
        assert_eq!(lengths(steps_of(&files(&[1; 7]), 3)), vec![3, 3, 1]);
        let big = STEP_BYTES / 2 + 1;
        assert_eq!(
            lengths(steps_of(&files(&[big, big, big]), 100)),
            vec![1, 1, 1]
        );
        // A file larger than the bound is a step of its own, never skipped.
        assert_eq!(
            lengths(steps_of(&files(&[1, STEP_BYTES * 2, 1]), 100)),
            vec![1, 1, 1]
        );
        assert!(steps_of(&files(&[]), 5).is_empty());
    }
}
