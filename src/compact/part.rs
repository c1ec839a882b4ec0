//! Compacting one collection hour into its next part, exactly once
//! (docs/decisions.md, "Compacting an hour", "Never doubled", "Never lost").

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};

use super::parquet::ParquetPartWriter;
use super::sort::{Entry, Sorter};
use super::state::{claim_text, parse_claim, Claim, CollectionHour, NameHash, StatePaths};
use super::walk::{folders_of_hour, Collections, FolderCache};
use super::{list_paths, CompactError, Formats, PassSummary};
use crate::domain::{EventHour, LakePath, PathLayout, Segment};
use crate::sink::{LakeFile, Sink, SinkError, Stored};

/// Change files asked for in one [`Sink::read_all`].
const READ_CHUNK: usize = 256;
/// Chunks read at once: one per core on the local lake, 64 requests on ADLS.
const CHUNKS_IN_FLIGHT: usize = 2;
/// Change files deleted at once.
const DELETES_IN_FLIGHT: usize = 32;
/// Rounds an hour may be looked at again after losing a race.
const MAX_ATTEMPTS: usize = 8;

/// What compacting needs: the store, the layouts and where to spool.
pub struct Context<'a> {
    pub sink: &'a dyn Sink,
    pub layout: &'a PathLayout,
    pub paths: &'a StatePaths,
    pub formats: Formats,
    pub delete_sources: bool,
    pub spool_dir: &'a Path,
}

/// How an attempt at an hour ended.
enum Attempt {
    Done,
    /// Another pass moved first (a claim taken, a file deleted): look again.
    Again,
}

/// Brings one collection hour up to date: finishes claimed parts whose data files are
/// missing, then puts every change file not yet in a part into the next one.
pub async fn compact_hour(
    context: &Context<'_>,
    cache: &mut FolderCache<'_>,
    key: &CollectionHour,
    summary: &mut PassSummary,
) -> Result<(), CompactError> {
    let collections = Collections::One {
        db: &key.db,
        coll: &key.coll,
    };
    let folders = folders_of_hour(context.layout, cache, key.hour, collections)
        .await?
        .remove(key)
        .unwrap_or_default();
    summary.hours_checked += 1;
    // Each round that ends in `Again` lost a race to a pass that made progress; a pass
    // that keeps losing gives up and leaves the hour to the next tick.
    for _ in 0..MAX_ATTEMPTS {
        if let Attempt::Done = attempt(context, key, &folders, summary).await? {
            return Ok(());
        }
    }
    Err(CompactError::Busy(format!(
        "{}/{} {}: other passes kept changing the hour; the next pass will continue",
        key.db, key.coll, key.hour
    )))
}

async fn attempt(
    context: &Context<'_>,
    key: &CollectionHour,
    folders: &[Vec<Segment>],
    summary: &mut PassSummary,
) -> Result<Attempt, CompactError> {
    let claims = read_claims(context, key).await?;
    let present = data_file_names(context, key).await?;
    for (index, claim) in claims.iter().enumerate() {
        let number = part_number(index);
        let complete = claim.formats.extensions().all(|extension| {
            present.contains(context.paths.data_file(key, number, extension).file_name())
        });
        if complete {
            continue;
        }
        // A pass died between claim and data: write the same part again.
        let wanted = |name: NameHash| claim.names.binary_search(&name).is_ok();
        let Some(gathered) = gather(context, key, folders, wanted).await? else {
            return Ok(Attempt::Again);
        };
        if gathered.names.len() != claim.names.len() {
            return Err(CompactError::Corrupt(format!(
                "part {number} of {}/{} {} is claimed but {} of its {} change files are gone, so its data files cannot be written; restore them or remove the claim",
                key.db, key.coll, key.hour, claim.names.len() - gathered.names.len(), claim.names.len()
            )));
        }
        publish_data(context, key, number, claim.formats, gathered.sorter).await?;
    }

    let mut compacted: Vec<NameHash> = claims
        .iter()
        .flat_map(|c| c.names.iter().copied())
        .collect();
    compacted.sort_unstable();
    let is_new = |name: NameHash| compacted.binary_search(&name).is_err();
    let Some(gathered) = gather(context, key, folders, is_new).await? else {
        return Ok(Attempt::Again);
    };
    if !gathered.names.is_empty() {
        let number = part_number(claims.len());
        let mut names = gathered.names;
        names.sort_unstable();
        let claim = LakeFile {
            path: context.paths.claim(key, number),
            contents: claim_text(&context.formats.list(), &names),
        };
        match store_one(context.sink, claim).await? {
            Stored::Written => {}
            Stored::AlreadyPresent => {
                tracing::info!(db = %key.db, coll = %key.coll, hour = %key.hour, part = number, "another pass took this part number first; looking again");
                return Ok(Attempt::Again);
            }
        }
        let (records, bytes) =
            publish_data(context, key, number, context.formats, gathered.sorter).await?;
        summary.parts_written += 1;
        summary.records_compacted += records;
        summary.bytes_compacted += bytes;
        tracing::info!(db = %key.db, coll = %key.coll, hour = %key.hour, part = number, records, bytes, "part written");
        compacted.extend(names);
        compacted.sort_unstable();
    }
    if context.delete_sources {
        summary.sources_deleted += delete_sources(context, key, folders, &compacted).await?;
    }
    Ok(Attempt::Done)
}

fn part_number(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// The hour's claims, in part order. Their numbers must run 1..m without a gap: each was
/// published after its predecessor was listed.
async fn read_claims(
    context: &Context<'_>,
    key: &CollectionHour,
) -> Result<Vec<Claim>, CompactError> {
    let mut numbered: Vec<(u32, LakePath)> =
        list_paths(context.sink, &context.paths.claims_folder(key))
            .await?
            .into_iter()
            .filter_map(|path| Some((StatePaths::claim_number(path.file_name())?, path)))
            .collect();
    numbered.sort_by_key(|(number, _)| *number);
    let mut claims = Vec::with_capacity(numbered.len());
    for (index, (number, path)) in numbered.into_iter().enumerate() {
        if number != part_number(index) {
            return Err(CompactError::Corrupt(format!(
                "the claims of {}/{} {} skip from part {index} to part {number}",
                key.db, key.coll, key.hour
            )));
        }
        let bytes = context.sink.read(&path).await?;
        let claim = parse_claim(&bytes).ok_or_else(|| {
            CompactError::Corrupt(format!(
                "the claim of part {number} of {}/{} {} is unreadable",
                key.db, key.coll, key.hour
            ))
        })?;
        claims.push(claim);
    }
    Ok(claims)
}

/// The names of the data files already in the hour's output folder.
async fn data_file_names(
    context: &Context<'_>,
    key: &CollectionHour,
) -> Result<std::collections::HashSet<Segment>, CompactError> {
    let folder = context.paths.output_folder(key);
    Ok(list_paths(context.sink, &folder)
        .await?
        .into_iter()
        .filter(|path| path.parent_segments() == folder.as_slice())
        .map(|path| path.file_name().clone())
        .collect())
}

/// The hash of `path`'s name when it is a change file of `key`'s hour directly in
/// `folder` (the hour is in the name: nothing is read).
fn record_of_hour(
    context: &Context<'_>,
    key: &CollectionHour,
    folder: &[Segment],
    path: &LakePath,
) -> Option<NameHash> {
    if path.parent_segments() != folder {
        return None;
    }
    let seconds = context.layout.seconds_from_name(path.file_name())?;
    (EventHour::of_unix_seconds(i64::from(seconds)) == key.hour)
        .then(|| NameHash::of(path.file_name()))
}

/// The wanted change files of an hour, read and sorted.
struct Gathered {
    sorter: Sorter,
    names: Vec<NameHash>,
    /// Keeps the spool folder (runs) until the part is written.
    _spool: SpoolDir,
}

/// Reads every change file of the hour whose name `wanted` accepts into a sorter.
/// `None` when a listed file was gone by the time it was read: another pass compacted
/// and deleted it, so this one must look again.
async fn gather(
    context: &Context<'_>,
    key: &CollectionHour,
    folders: &[Vec<Segment>],
    wanted: impl Fn(NameHash) -> bool,
) -> Result<Option<Gathered>, CompactError> {
    let spool = SpoolDir::create(context.spool_dir)?;
    let mut sorter = Sorter::new(spool.path());
    let mut names = Vec::new();
    for folder in folders {
        let mut pages = context.sink.list(folder);
        while let Some(page) = pages.try_next().await? {
            let mut selected = Vec::new();
            for listed in page {
                match record_of_hour(context, key, folder, &listed.path) {
                    Some(name) if wanted(name) => {
                        names.push(name);
                        selected.push(listed.path);
                    }
                    _ => {}
                }
            }
            // Chunks of a page, two at a time: the local lake reads a chunk on one
            // blocking thread, ADLS a chunk's files concurrently.
            let chunks: Vec<Vec<LakePath>> = selected
                .chunks(READ_CHUNK)
                .map(<[LakePath]>::to_vec)
                .collect();
            let mut reads = futures_util::stream::iter(chunks)
                .map(|chunk| context.sink.read_all(chunk))
                .buffered(CHUNKS_IN_FLIGHT)
                .flat_map(futures_util::stream::iter);
            while let Some(read) = reads.next().await {
                let line = match read {
                    Ok(bytes) => Vec::from(bytes),
                    Err(SinkError::NotFound { .. }) => return Ok(None),
                    Err(error) => return Err(error.into()),
                };
                let key_text = event_id(&line).ok_or_else(|| {
                    CompactError::Corrupt(format!(
                        "a change file of {}/{} {} is not a record (no eventId)",
                        key.db, key.coll, key.hour
                    ))
                })?;
                sorter.push(Entry {
                    key: key_text,
                    line,
                });
                if sorter.is_full() {
                    let run = sorter.take_run();
                    let written = tokio::task::spawn_blocking(move || run.write())
                        .await
                        .map_err(task_failed)?;
                    sorter.add_run(written.map_err(|source| spool.error(source))?);
                }
            }
        }
    }
    Ok(Some(Gathered {
        sorter,
        names,
        _spool: spool,
    }))
}

/// The record's `eventId`, the sort key. Records are written by `Record::to_json_line`,
/// which puts it third, after two short fields, as a hex string: found there without
/// parsing the document that follows; anything else is parsed in full.
fn event_id(line: &[u8]) -> Option<String> {
    const KEY: &[u8] = b",\"eventId\":\"";
    let head = &line[..line.len().min(HEAD_BYTES)];
    if line.starts_with(b"{\"operationType\":\"") {
        if let Some(at) = head.windows(KEY.len()).position(|window| window == KEY) {
            let value = &line[at + KEY.len()..];
            if let Some(end) = value.iter().position(|&byte| byte == b'"') {
                let id = &value[..end];
                if !id.is_empty() && id.iter().all(u8::is_ascii_hexdigit) {
                    return std::str::from_utf8(id).ok().map(str::to_owned);
                }
            }
        }
    }
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(rename = "eventId", borrow)]
        event_id: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Head>(line)
        .ok()
        .map(|head| head.event_id.into_owned())
}

/// How far into a record its `eventId` is looked for: past `operationType` and
/// `dataSource`, whose values are short.
const HEAD_BYTES: usize = 128;

/// Writes part `number`'s data files from the sorted records and publishes them
/// write-once. Returns the records and bytes written.
async fn publish_data(
    context: &Context<'_>,
    key: &CollectionHour,
    number: u32,
    formats: Formats,
    sorter: Sorter,
) -> Result<(u64, u64), CompactError> {
    let spool = SpoolDir::create(context.spool_dir)?;
    let spooled = |extension: &str| spool.path().join(format!("part.{extension}"));
    let (jsonl, parquet) = (spooled("jsonl"), spooled("parquet"));
    let written =
        tokio::task::spawn_blocking(move || write_spooled(sorter, formats, &jsonl, &parquet))
            .await
            .map_err(task_failed)??;
    for extension in formats.extensions() {
        let path = context.paths.data_file(key, number, extension);
        // `AlreadyPresent`: a pass that died after publishing it, or one racing on the
        // same repair; either way the same records in the same order.
        context
            .sink
            .store_spooled(&path, &spooled(extension))
            .await?;
    }
    Ok(written)
}

/// Drains the sorter into the spooled JSONL and Parquet files (blocking).
fn write_spooled(
    sorter: Sorter,
    formats: Formats,
    jsonl: &Path,
    parquet: &Path,
) -> Result<(u64, u64), CompactError> {
    let spool_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CompactError::Spool { path, source }
    };
    let mut jsonl_out = match formats.jsonl {
        true => Some(BufWriter::with_capacity(
            1 << 20,
            File::create(jsonl).map_err(spool_error(jsonl))?,
        )),
        false => None,
    };
    let mut parquet_out = match formats.parquet {
        true => Some(ParquetPartWriter::create(
            File::create(parquet).map_err(spool_error(parquet))?,
        )?),
        false => None,
    };
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut parquet_failure = None;
    sorter
        .drain(|entry| {
            records += 1;
            bytes += entry.line.len() as u64;
            if let Some(out) = jsonl_out.as_mut() {
                out.write_all(&entry.line)?;
            }
            if let Some(out) = parquet_out.as_mut() {
                if let Err(error) = out.push(&entry.line) {
                    parquet_failure = Some(error);
                    return Err(std::io::Error::other("Parquet"));
                }
            }
            Ok(())
        })
        .map_err(|source| match parquet_failure.take() {
            Some(error) => CompactError::from(error),
            None => CompactError::Spool {
                path: jsonl.to_path_buf(),
                source,
            },
        })?;
    // Durability is the store's: `store_spooled` flushes what it publishes.
    if let Some(out) = jsonl_out {
        out.into_inner().map_err(|error| CompactError::Spool {
            path: jsonl.to_path_buf(),
            source: error.into_error(),
        })?;
    }
    if let Some(out) = parquet_out {
        out.finish()?;
    }
    Ok((records, bytes))
}

/// Deletes the hour's change files whose names are in a finished part. Re-lists the
/// folders: only names seen now, and only those compacted, are deleted.
async fn delete_sources(
    context: &Context<'_>,
    key: &CollectionHour,
    folders: &[Vec<Segment>],
    compacted: &[NameHash],
) -> Result<u64, CompactError> {
    let mut deleted = 0;
    for folder in folders {
        let mut pages = context.sink.list(folder);
        while let Some(page) = pages.try_next().await? {
            let doomed: Vec<LakePath> = page
                .into_iter()
                .map(|listed| listed.path)
                .filter(|path| {
                    record_of_hour(context, key, folder, path)
                        .is_some_and(|name| compacted.binary_search(&name).is_ok())
                })
                .collect();
            let mut deletions = futures_util::stream::iter(doomed)
                .map(|path| async move { context.sink.delete(&path).await })
                .buffer_unordered(DELETES_IN_FLIGHT);
            while let Some(outcome) = deletions.next().await {
                outcome?;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

pub(super) async fn store_one(sink: &dyn Sink, file: LakeFile) -> Result<Stored, CompactError> {
    Ok(sink.store_one(file).await?)
}

/// A helper task or the system's random source failed: reported as a failed storage
/// task, which the next pass may not meet.
fn task_failed(error: impl std::fmt::Display) -> CompactError {
    CompactError::Storage(SinkError::Task(error.to_string()))
}

/// 16 random hex digits, for names no other pass or process picks.
pub(super) fn random_hex() -> Result<String, CompactError> {
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(task_failed)?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}

/// A private folder under `COMPACT_SPOOL_DIR` for one hour's runs and part files,
/// removed when dropped (also when the pass fails or is cancelled).
pub struct SpoolDir {
    path: PathBuf,
}

impl SpoolDir {
    pub fn create(parent: &Path) -> Result<SpoolDir, CompactError> {
        let name = format!("lake-compact-{}-{}", std::process::id(), random_hex()?);
        let path = parent.join(name);
        std::fs::create_dir_all(&path).map_err(|source| CompactError::Spool {
            path: path.clone(),
            source,
        })?;
        Ok(SpoolDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, source: std::io::Error) -> CompactError {
        CompactError::Spool {
            path: self.path.clone(),
            source,
        }
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::event_id;

    #[test]
    fn event_ids_are_found_fast_or_parsed() {
        let fast =
            br#"{"operationType":"insert","dataSource":"fullDocument","eventId":"82AB01","ns":{}}"#;
        assert_eq!(event_id(fast).as_deref(), Some("82AB01"));
        // Not hex, another order, escapes: the full parse decides.
        let odd = br#"{"operationType":"insert","eventId":"a\u0062c","dataSource":"x"}"#;
        assert_eq!(event_id(odd).as_deref(), Some("abc"));
        let later = br#"{"data":{"eventId":"no"},"eventId":"82FF"}"#;
        assert_eq!(event_id(later).as_deref(), Some("82FF"));
        assert_eq!(event_id(br#"{"operationType":"insert"}"#), None);
        assert_eq!(event_id(b"not json"), None);
    }
}
