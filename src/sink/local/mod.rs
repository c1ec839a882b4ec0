//! The embedded default sink: a local directory laid out exactly like the ADLS filesystem.
//!
//! Each file is first *staged*: written complete under no name at all (Linux `O_TMPFILE`)
//! or, where that is unavailable, under a temporary name in `<container>/.tmp/` (lake
//! readers skip names starting with `.`, and no configured folder can start with one).
//! Once the staged contents are on disk, the file is *published* by hard-linking it to its
//! final name. `link` fails if the name exists, so publishing is atomic and never replaces
//! a file: a redelivered event finds its file present. Where hard links are not supported
//! the temporary file is renamed into place (same atomicity; identical content, so
//! replacing is harmless). The names are then flushed too, so an acknowledged file
//! survives a crash, including a file found already present (it may belong to a request
//! still flushing it).
//!
//! The files of one request are handled together on one blocking thread, in chunks: stage
//! all, one flush, publish all, one flush, with flushes shared between concurrent requests
//! ([`GroupSync`]). That keeps a 100-event batch at two disk flushes instead of two
//! hundred, and bounds the descriptors a request holds to two per file of a chunk.
//!
//! A file spooled to local disk first (compaction's parts, up to several GB) is never read
//! into memory: on the lake's file system it is hard-linked into place, from another it is
//! copied in a stream into the staging (`spooled`).
//!
//! Listing walks the folder tree a page at a time on the blocking pool (`listing`).
//! Deleting does not flush: a delete lost in a crash brings back a complete file that was
//! stored once, which readers must accept anyway (a redelivered event writes it again).

mod folder;
mod listing;
mod spooled;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use self::folder::{discard, probe_staging, Folder, Staged, Staging, TempNames};
use super::group_sync::{GroupSync, Mark, FLUSHES_WHOLE_FILE_SYSTEM};
use super::{LakeFile, ListPages, Sink, SinkError, Stored};
use crate::domain::{LakePath, Segment};

/// Temporary files older than this at start-up belong to a process that died mid-write.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
/// Files staged before a flush: bounds open descriptors (a staged file and its folder).
const CHUNK: usize = 64;
/// The folder for named temporary files, inside the container.
const TEMP_FOLDER: &str = ".tmp";

/// A lake in a local directory: `<lake dir>/<container>/<path>`.
#[derive(Debug, Clone)]
pub struct LocalLake {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    container_root: PathBuf,
    temp_names: TempNames,
    staging: Staging,
    /// Flushes files and names to disk before acknowledging; `None` when
    /// `LOCAL_LAKE_FSYNC=false` (throwaway lakes, benchmarks of everything else).
    durability: Option<Durability>,
}

/// How the lake makes writes durable.
#[derive(Debug)]
enum Durability {
    /// One shared flush of the whole file system (Linux).
    Group(GroupSync),
    /// Each file and folder flushed by its writer.
    PerFile,
}

/// Where one file of a request stands.
enum Progress {
    Done(Result<Stored, SinkError>),
    /// Under its name (present already, or linked there by this call): stored once the
    /// names are flushed.
    Named {
        path: LakePath,
        folder: PathBuf,
        stored: Stored,
    },
    Staged {
        path: LakePath,
        folder: PathBuf,
        staged: Staged,
    },
}

impl LocalLake {
    /// Opens (creating if needed) the container directory, removes temporary files left
    /// behind by a crashed process and finds out how this file system stages files.
    pub fn open(lake_dir: &Path, container: &str, durable: bool) -> io::Result<LocalLake> {
        let durability = match durable {
            false => None,
            true if FLUSHES_WHOLE_FILE_SYSTEM => {
                fs::create_dir_all(lake_dir.join(container))?;
                Some(Durability::Group(GroupSync::for_file_system(
                    &lake_dir.join(container),
                )?))
            }
            true => Some(Durability::PerFile),
        };
        LocalLake::with_durability(lake_dir, container, durability)
    }

    fn with_durability(
        lake_dir: &Path,
        container: &str,
        durability: Option<Durability>,
    ) -> io::Result<LocalLake> {
        let container_root = lake_dir.join(container);
        let temp_dir = container_root.join(TEMP_FOLDER);
        fs::create_dir_all(&temp_dir)?;
        remove_stale_temp_files(&temp_dir);
        let temp_names = TempNames::new(temp_dir);
        let staging = probe_staging(&temp_names);
        Ok(LocalLake {
            inner: Arc::new(Inner {
                container_root,
                temp_names,
                staging,
                durability,
            }),
        })
    }
}

#[async_trait]
impl Sink for LocalLake {
    async fn store_all(&self, files: Vec<LakeFile>) -> Vec<Result<Stored, SinkError>> {
        let count = files.len();
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || inner.store_all(files)).await {
            Ok(results) => results,
            Err(error) => (0..count)
                .map(|_| Err(SinkError::Task(error.to_string())))
                .collect(),
        }
    }

    fn list(&self, folder: &[Segment]) -> ListPages {
        listing::pages(self.inner.container_root.clone(), folder.to_vec())
    }

    async fn read(&self, path: &LakePath) -> Result<Bytes, SinkError> {
        let root = self.inner.container_root.clone();
        let path = path.clone();
        tokio::task::spawn_blocking(move || read_files(&root, std::slice::from_ref(&path)))
            .await
            .map_err(|error| SinkError::Task(error.to_string()))?
            .pop()
            .unwrap_or_else(|| Err(SinkError::Task("no result".to_owned())))
    }

    async fn read_all(&self, paths: Vec<LakePath>) -> Vec<Result<Bytes, SinkError>> {
        let count = paths.len();
        let root = self.inner.container_root.clone();
        let read = move || read_files(&root, &paths);
        match tokio::task::spawn_blocking(read).await {
            Ok(results) => results,
            Err(error) => (0..count)
                .map(|_| Err(SinkError::Task(error.to_string())))
                .collect(),
        }
    }

    async fn delete(&self, path: &LakePath) -> Result<(), SinkError> {
        match tokio::fs::remove_file(path.under(&self.inner.container_root)).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(io_error("deleting", path, source)),
        }
    }

    async fn folders(&self, folder: &[Segment]) -> Result<Vec<Segment>, SinkError> {
        let dir = self.inner.dir_of(folder);
        let listed = tokio::task::spawn_blocking(move || listing::child_folders(&dir))
            .await
            .map_err(|error| SinkError::Task(error.to_string()))?;
        listed.map_err(|source| SinkError::Io {
            operation: "listing folders of",
            path: crate::domain::lake_path::join(folder),
            source,
        })
    }

    async fn store_spooled(&self, path: &LakePath, spooled: &Path) -> Result<Stored, SinkError> {
        let inner = Arc::clone(&self.inner);
        let (path, spooled) = (path.clone(), spooled.to_path_buf());
        tokio::task::spawn_blocking(move || inner.store_spooled(&path, &spooled))
            .await
            .map_err(|error| SinkError::Task(error.to_string()))?
    }

    fn describe(&self) -> String {
        format!("local lake at {}", self.inner.container_root.display())
    }

    /// The lake's folder takes a new file: a temporary one, made and removed again.
    async fn probe(&self) -> Result<(), SinkError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let name = inner.temp_names.next();
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&name)
                .map_err(|source| SinkError::Io {
                    operation: "probing the lake folder",
                    path: name.display().to_string(),
                    source,
                })?;
            let _ = fs::remove_file(&name);
            Ok(())
        })
        .await
        .map_err(|error| SinkError::Task(error.to_string()))?
    }
}

/// Reads files of the lake (blocking), opening each folder once for a run of paths in it.
fn read_files(root: &Path, paths: &[LakePath]) -> Vec<Result<Bytes, SinkError>> {
    let mut results = Vec::with_capacity(paths.len());
    let mut folder: Option<(&[Segment], io::Result<Folder>)> = None;
    for path in paths {
        let parent = path.parent_segments();
        if folder.as_ref().is_none_or(|(open, _)| *open != parent) {
            let dir = parent.iter().fold(root.to_path_buf(), |mut dir, segment| {
                dir.push(segment.as_str());
                dir
            });
            folder = Some((parent, Folder::open_existing(dir)));
        }
        let read = match folder.as_ref().map(|(_, open)| open) {
            Some(Ok(open)) => open.read(path.file_name().as_str()),
            Some(Err(error)) => Err(copy_error(error)),
            None => unreachable!("a folder was just opened"),
        };
        results.push(match read {
            Ok(contents) => Ok(Bytes::from(contents)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Err(SinkError::NotFound {
                operation: "reading",
                path: path.to_string(),
            }),
            Err(source) => Err(io_error("reading", path, source)),
        });
    }
    results
}

fn io_error(operation: &'static str, path: &LakePath, source: io::Error) -> SinkError {
    SinkError::Io {
        operation,
        path: path.to_string(),
        source,
    }
}

/// A copy of an error for each file it failed (`io::Error` is not `Clone`).
fn copy_error(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

impl Inner {
    fn store_all(&self, files: Vec<LakeFile>) -> Vec<Result<Stored, SinkError>> {
        let mut results = Vec::with_capacity(files.len());
        let mut files = files.into_iter().peekable();
        while files.peek().is_some() {
            let mark = self.mark();
            // The folders of this chunk, opened once each (usually one).
            let mut folders: HashMap<PathBuf, Folder> = HashMap::new();
            let chunk: Vec<Progress> = files
                .by_ref()
                .take(CHUNK)
                .map(|file| self.stage(file, &mut folders))
                .collect();
            results.extend(self.publish_chunk(chunk, &folders, mark));
        }
        results
    }

    /// Writes a file complete, without making it visible.
    fn stage(&self, file: LakeFile, folders: &mut HashMap<PathBuf, Folder>) -> Progress {
        let LakeFile { path, contents } = file;
        let folder = match self.open_folder(&path, folders) {
            Ok(folder) => folder,
            Err(error) => return Progress::Done(Err(error)),
        };
        // With unnamed staging, `linkat` itself tells a redelivery (EEXIST): a lookup first
        // would cost every new file a search of a folder holding an hour of changes, to
        // spare the rare redelivery one write. Named staging may end in a rename, which
        // cannot tell, so it looks first.
        let look_first = self.staging == Staging::Named;
        self.stage_in(path, folder, look_first, |staged| {
            staged.write_all(&contents)
        })
    }

    /// The folder a file goes to, opened once per chunk (usually one).
    fn open_folder<'f>(
        &self,
        path: &LakePath,
        folders: &'f mut HashMap<PathBuf, Folder>,
    ) -> Result<&'f Folder, SinkError> {
        match folders.entry(self.dir_of(path.parent_segments())) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => match Folder::open(entry.key().clone()) {
                Ok(folder) => Ok(entry.insert(folder)),
                Err(source) => Err(io_error("opening folder of", path, source)),
            },
        }
    }

    /// Stages a file in `folder`, its contents written by `write`; when `look_first`, a
    /// name already taken is found before anything is written.
    fn stage_in(
        &self,
        path: LakePath,
        folder: &Folder,
        look_first: bool,
        write: impl FnOnce(&mut fs::File) -> io::Result<()>,
    ) -> Progress {
        let name = path.file_name().as_str();
        if look_first {
            match folder.contains(name) {
                Ok(true) => {
                    return Progress::Named {
                        folder: folder.path().to_path_buf(),
                        path,
                        stored: Stored::AlreadyPresent,
                    }
                }
                Ok(false) => {}
                Err(source) => return Progress::Done(Err(io_error("checking", &path, source))),
            }
        }
        let flush_each = matches!(self.durability, Some(Durability::PerFile));
        match folder.stage_with(&self.temp_names, self.staging, flush_each, write) {
            Ok(staged) => Progress::Staged {
                folder: folder.path().to_path_buf(),
                path,
                staged,
            },
            Err(source) => Progress::Done(Err(io_error("writing", &path, source))),
        }
    }

    /// The directory of a lake folder.
    fn dir_of(&self, folder: &[Segment]) -> PathBuf {
        let mut dir = self.container_root.clone();
        dir.extend(folder.iter().map(Segment::as_str));
        dir
    }

    /// Publishes every staged file of a chunk once their contents are durable, then makes
    /// the names durable, those found present included.
    fn publish_chunk(
        &self,
        chunk: Vec<Progress>,
        folders: &HashMap<PathBuf, Folder>,
        mark: Option<Mark>,
    ) -> Vec<Result<Stored, SinkError>> {
        let any_staged = chunk.iter().any(|p| matches!(p, Progress::Staged { .. }));
        // Contents must be on disk before their names appear, or a crash could leave a
        // complete-looking name over missing data.
        let contents_flushed = match (any_staged, &self.durability, mark) {
            (true, Some(Durability::Group(group)), Some(mark)) => group.flush(mark),
            _ => Ok(()),
        };

        // Results that are final only once the names are flushed, and their folders.
        let mut pending: Vec<(usize, LakePath)> = Vec::new();
        let mut touched: Vec<&Folder> = Vec::new();
        let mut results = Vec::with_capacity(chunk.len());
        for (index, progress) in chunk.into_iter().enumerate() {
            let (result, folder) = match progress {
                Progress::Done(result) => (result, None),
                Progress::Named {
                    path,
                    folder,
                    stored,
                } => {
                    pending.push((index, path));
                    (Ok(stored), folders.get(&folder))
                }
                Progress::Staged {
                    path,
                    folder,
                    staged,
                } => {
                    let folder = folders.get(&folder);
                    let outcome = match (&contents_flushed, folder) {
                        (Err(error), _) => {
                            discard(staged);
                            Err(io_error("flushing", &path, copy_error(error)))
                        }
                        (Ok(()), None) => {
                            discard(staged);
                            Err(SinkError::Task("folder closed too early".to_owned()))
                        }
                        (Ok(()), Some(folder)) => folder
                            .publish(staged, path.file_name().as_str())
                            .map_err(|source| io_error("publishing", &path, source)),
                    };
                    if outcome.is_ok() {
                        pending.push((index, path));
                    }
                    (outcome, folder)
                }
            };
            if let (Ok(_), Some(folder)) = (&result, folder) {
                if !touched.iter().any(|t| std::ptr::eq(*t, folder)) {
                    touched.push(folder);
                }
            }
            results.push(result);
        }

        if let Err(error) = self.flush_names(&touched, mark) {
            // Visible, but not known to be durable: the caller must retry, and the retry
            // will find the files present (and flush again).
            for (index, path) in pending {
                results[index] = Err(io_error("flushing", &path, copy_error(&error)));
            }
        }
        results
    }

    fn mark(&self) -> Option<Mark> {
        match &self.durability {
            Some(Durability::Group(group)) => Some(group.mark()),
            _ => None,
        }
    }

    /// Makes the names in `folders` durable: one shared flush, or each folder itself.
    fn flush_names(&self, folders: &[&Folder], mark: Option<Mark>) -> io::Result<()> {
        match (&self.durability, mark) {
            _ if folders.is_empty() => Ok(()),
            (Some(Durability::Group(group)), Some(mark)) => group.flush(mark),
            (Some(Durability::PerFile), _) => folders.iter().try_for_each(|folder| folder.sync()),
            _ => Ok(()),
        }
    }
}

fn remove_stale_temp_files(temp_dir: &Path) {
    let Ok(entries) = fs::read_dir(temp_dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .is_some_and(|age| age > STALE_TEMP_AGE);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;

    fn file(names: &[&str], contents: &[u8]) -> LakeFile {
        LakeFile {
            path: LakePath::new(names.iter().map(|n| Segment::encode(n)).collect())
                .expect("non-empty"),
            contents: contents.to_vec(),
        }
    }

    async fn store_one(lake: &LocalLake, file: LakeFile) -> Result<Stored, SinkError> {
        lake.store_all(vec![file]).await.pop().expect("one result")
    }

    #[tokio::test]
    async fn writes_once_and_reports_redeliveries() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = LocalLake::open(dir.path(), "container", true).expect("open");
        let target = file(&["changes", "db", "file.json"], b"{}\n");

        let first = store_one(&lake, target.clone()).await.expect("stored");
        let second = store_one(&lake, target).await.expect("stored");

        assert_eq!((first, second), (Stored::Written, Stored::AlreadyPresent));
        let stored = dir.path().join("container/changes/db/file.json");
        assert_eq!(fs::read(stored).expect("file"), b"{}\n");
        let leftovers = fs::read_dir(dir.path().join("container/.tmp"))
            .expect("tmp")
            .count();
        assert_eq!(leftovers, 0, "no temporary files are left");
    }

    #[tokio::test]
    async fn a_batch_gets_one_result_per_file_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = LocalLake::open(dir.path(), "c", true).expect("open");
        fs::write(dir.path().join("c/blocked"), b"").expect("blocker");
        let mut files: Vec<LakeFile> = (0..600)
            .map(|n| file(&["d", &format!("{n}.json")], n.to_string().as_bytes()))
            .collect();
        files[7] = file(&["blocked", "x.json"], b"x");
        files[8] = files[9].clone();

        let results = lake.store_all(files).await;

        assert_eq!(results.len(), 600);
        assert!(
            matches!(results[7], Err(SinkError::Io { .. })),
            "a file where a folder must go"
        );
        assert_eq!(results[8].as_ref().ok(), Some(&Stored::Written));
        assert_eq!(
            results[9].as_ref().ok(),
            Some(&Stored::AlreadyPresent),
            "duplicate in a batch"
        );
        let written = results
            .iter()
            .filter(|r| matches!(r, Ok(Stored::Written)))
            .count();
        assert_eq!(written, 598);
        assert_eq!(
            fs::read(dir.path().join("c/d/599.json")).expect("file"),
            b"599"
        );
        assert_eq!(
            fs::read_dir(dir.path().join("c/d")).expect("dir").count(),
            598
        );
    }

    #[tokio::test]
    async fn concurrent_duplicates_leave_one_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = LocalLake::open(dir.path(), "c", true).expect("open");
        let attempts = (0..16).map(|_| {
            let lake = lake.clone();
            tokio::spawn(async move { store_one(&lake, file(&["x.json"], b"same\n")).await })
        });
        let mut written = 0;
        for attempt in attempts {
            if attempt.await.expect("join").expect("stored") == Stored::Written {
                written += 1;
            }
        }
        assert_eq!(written, 1);
        assert_eq!(
            fs::read(dir.path().join("c/x.json")).expect("file"),
            b"same\n"
        );
    }

    #[test]
    fn the_named_fallback_publishes_without_replacing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let folder = Folder::open(dir.path().join("f")).expect("folder");
        let temp = dir.path().join("t.tmp");
        let target = dir.path().join("f/final.json");
        fs::write(&temp, b"new").expect("temp");
        let first = folder.publish(Staged::Named(temp.clone()), "final.json");
        assert_eq!(first.ok(), Some(Stored::Written));
        assert!(!temp.exists(), "the temporary name is removed");

        fs::write(&temp, b"other").expect("temp");
        let second = folder.publish(Staged::Named(temp.clone()), "final.json");
        assert_eq!(second.ok(), Some(Stored::AlreadyPresent));
        assert_eq!(fs::read(&target).expect("final"), b"new", "never replaced");
        assert!(!temp.exists());
        assert!(folder.contains("final.json").expect("lookup"));
        assert!(!folder.contains("other.json").expect("lookup"));
    }

    /// A lake whose group flush fails while `failing` is set.
    fn lake_with_flaky_flush(dir: &Path) -> (LocalLake, Arc<std::sync::atomic::AtomicBool>) {
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let switch = Arc::clone(&failing);
        let group = GroupSync::with_flush(Box::new(move || {
            if switch.load(std::sync::atomic::Ordering::SeqCst) {
                Err(io::Error::from_raw_os_error(libc::EIO))
            } else {
                Ok(())
            }
        }));
        let lake =
            LocalLake::with_durability(dir, "c", Some(Durability::Group(group))).expect("open");
        (lake, failing)
    }

    #[tokio::test]
    async fn a_failed_flush_is_an_error_and_leaves_nothing_visible() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (lake, failing) = lake_with_flaky_flush(dir.path());
        failing.store(true, std::sync::atomic::Ordering::SeqCst);
        let result = store_one(&lake, file(&["d", "x.json"], b"x")).await;
        let Err(SinkError::Io { source, .. }) = result else {
            panic!("a failed flush must fail the write: {result:?}");
        };
        assert_eq!(
            source.raw_os_error(),
            Some(libc::EIO),
            "the real cause is kept"
        );
        assert!(
            !dir.path().join("c/d/x.json").exists(),
            "no name over unflushed data"
        );
    }

    #[tokio::test]
    async fn a_file_found_present_counts_only_once_its_name_is_flushed() {
        // A redelivery may find the file of a request that is still flushing it; it must
        // not be acknowledged on the strength of a name that is not yet durable.
        let dir = tempfile::tempdir().expect("temp dir");
        let (lake, failing) = lake_with_flaky_flush(dir.path());
        let target = file(&["d", "x.json"], b"x");
        assert_eq!(
            store_one(&lake, target.clone()).await.ok(),
            Some(Stored::Written)
        );

        failing.store(true, std::sync::atomic::Ordering::SeqCst);
        let redelivered = store_one(&lake, target.clone()).await;
        assert!(
            matches!(redelivered, Err(SinkError::Io { .. })),
            "{redelivered:?}"
        );

        failing.store(false, std::sync::atomic::Ordering::SeqCst);
        let retried = store_one(&lake, target).await;
        assert_eq!(retried.ok(), Some(Stored::AlreadyPresent));
    }
}
