//! The embedded default sink: a local directory laid out exactly like the ADLS filesystem.
//!
//! Each file is first *staged*: written complete under no name at all (Linux `O_TMPFILE`)
//! or, where that is unavailable, under a temporary name in `<container>/_tmp/` (lake
//! readers skip names starting with `_`). Once the staged contents are on disk, the file is
//! *published* by hard-linking it to its final name. `link` fails if the name exists, so
//! publishing is atomic and never replaces a file: a redelivered event finds its file
//! present. Where hard links are not supported the temporary file is renamed into place
//! (same atomicity; identical content, so replacing is harmless). The new names are then
//! flushed too, so an acknowledged file survives a crash.
//!
//! The files of one request are handled together on one blocking thread: stage all, one
//! flush, publish all, one flush, with flushes shared between concurrent requests
//! ([`GroupSync`]). That keeps a 100-event batch at two disk flushes instead of two hundred.

mod folder;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use self::folder::{discard, Folder, Staged, TempNames};
use super::group_sync::{GroupSync, FLUSHES_WHOLE_FILE_SYSTEM};
use super::{LakeFile, Sink, SinkError, Stored};
use crate::domain::LakePath;

/// Temporary files older than this at start-up belong to a process that died mid-write.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
/// Files staged before a flush: bounds open descriptors for huge batches.
const CHUNK: usize = 256;

/// A lake in a local directory: `<lake dir>/<container>/<path>`.
#[derive(Debug, Clone)]
pub struct LocalLake {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    container_root: PathBuf,
    temp_names: TempNames,
    /// Flushes files and names to disk before acknowledging; `None` when
    /// `LOCAL_LAKE_FSYNC=false` (throwaway lakes, benchmarks of everything else).
    durability: Option<GroupSync>,
}

/// Where one file of a request stands.
enum Progress {
    Done(Result<Stored, SinkError>),
    Staged {
        path: LakePath,
        /// Index into the request's open folders.
        folder: usize,
        staged: Staged,
    },
}

impl LocalLake {
    /// Opens (creating if needed) the container directory and removes temporary files
    /// left behind by a crashed process.
    pub fn open(lake_dir: &Path, container: &str, durable: bool) -> io::Result<LocalLake> {
        let container_root = lake_dir.join(container);
        let temp_dir = container_root.join("_tmp");
        fs::create_dir_all(&temp_dir)?;
        remove_stale_temp_files(&temp_dir);
        let durability = if durable {
            Some(GroupSync::new(&container_root)?)
        } else {
            None
        };
        Ok(LocalLake {
            inner: Arc::new(Inner {
                container_root,
                temp_names: TempNames::new(temp_dir),
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

    fn describe(&self) -> String {
        format!("local lake at {}", self.inner.container_root.display())
    }
}

fn io_error(operation: &'static str, path: &LakePath, source: io::Error) -> SinkError {
    SinkError::Io {
        operation,
        path: path.to_string(),
        source,
    }
}

impl Inner {
    fn store_all(&self, files: Vec<LakeFile>) -> Vec<Result<Stored, SinkError>> {
        // The folders this request writes to, opened once (usually one or a few).
        let mut folders: Vec<Folder> = Vec::new();
        let mut results = Vec::with_capacity(files.len());
        let mut files = files.into_iter().peekable();
        while files.peek().is_some() {
            let chunk: Vec<Progress> = files
                .by_ref()
                .take(CHUNK)
                .map(|file| self.stage(file, &mut folders))
                .collect();
            results.extend(self.publish_chunk(chunk, &folders));
        }
        results
    }

    /// Writes a file complete, without making it visible.
    fn stage(&self, file: LakeFile, folders: &mut Vec<Folder>) -> Progress {
        let parent = file.path.parent_segments().iter().fold(
            self.container_root.clone(),
            |mut dir, segment| {
                dir.push(segment.as_str());
                dir
            },
        );
        let index = match folders.iter().position(|folder| folder.path() == parent) {
            Some(index) => index,
            None => match Folder::open(parent) {
                Ok(folder) => {
                    folders.push(folder);
                    folders.len() - 1
                }
                Err(source) => {
                    return Progress::Done(Err(io_error("opening folder of", &file.path, source)))
                }
            },
        };
        let folder = &folders[index];
        let name = file.path.file_name().as_str();
        // Redeliveries take this path: no write at all.
        match folder.contains(name) {
            Ok(true) => return Progress::Done(Ok(Stored::AlreadyPresent)),
            Ok(false) => {}
            Err(source) => return Progress::Done(Err(io_error("checking", &file.path, source))),
        }
        let flush_each = self.durability.is_some() && !FLUSHES_WHOLE_FILE_SYSTEM;
        match folder.stage(&file.contents, &self.temp_names, flush_each) {
            Ok(staged) => Progress::Staged {
                path: file.path,
                folder: index,
                staged,
            },
            Err(source) => Progress::Done(Err(io_error("writing", &file.path, source))),
        }
    }

    /// Publishes every staged file of a chunk once their contents are durable, then makes
    /// the new names durable.
    fn publish_chunk(
        &self,
        chunk: Vec<Progress>,
        folders: &[Folder],
    ) -> Vec<Result<Stored, SinkError>> {
        let any_staged = chunk.iter().any(|p| matches!(p, Progress::Staged { .. }));
        // Contents must be on disk before their names appear, or a crash could leave a
        // complete-looking name over missing data.
        let contents_flushed = if any_staged {
            self.flush_contents()
        } else {
            Ok(())
        };

        let mut touched: Vec<usize> = Vec::new();
        let mut written: Vec<(usize, LakePath)> = Vec::new();
        let mut results = Vec::with_capacity(chunk.len());
        for (index, progress) in chunk.into_iter().enumerate() {
            let result = match progress {
                Progress::Done(result) => result,
                Progress::Staged {
                    path,
                    folder,
                    staged,
                } => match &contents_flushed {
                    Err(error) => {
                        discard(staged);
                        Err(io_error("flushing", &path, io::Error::from(error.kind())))
                    }
                    Ok(()) => {
                        let outcome = folders[folder].publish(staged, path.file_name().as_str());
                        if let Ok(Stored::Written) = outcome {
                            if !touched.contains(&folder) {
                                touched.push(folder);
                            }
                            written.push((index, path.clone()));
                        }
                        outcome.map_err(|source| io_error("publishing", &path, source))
                    }
                },
            };
            results.push(result);
        }

        let touched: Vec<&Folder> = touched.into_iter().map(|index| &folders[index]).collect();
        if let Err(error) = self.flush_names(&touched) {
            // Written, but not known to be durable: the caller must retry, and the retry
            // will find the files present.
            for (index, path) in written {
                results[index] = Err(io_error("flushing", &path, io::Error::from(error.kind())));
            }
        }
        results
    }

    /// Makes the contents of staged files durable: one shared file-system flush where
    /// available (elsewhere each file was flushed as it was written).
    fn flush_contents(&self) -> io::Result<()> {
        match &self.durability {
            Some(group) if FLUSHES_WHOLE_FILE_SYSTEM => group.flush(),
            _ => Ok(()),
        }
    }

    /// Makes new names in `folders` durable: one shared flush, or each folder itself.
    fn flush_names(&self, folders: &[&Folder]) -> io::Result<()> {
        match &self.durability {
            _ if folders.is_empty() => Ok(()),
            None => Ok(()),
            Some(group) if FLUSHES_WHOLE_FILE_SYSTEM => group.flush(),
            Some(_) => folders.iter().try_for_each(|folder| folder.sync()),
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
        let leftovers = fs::read_dir(dir.path().join("container/_tmp"))
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
}
