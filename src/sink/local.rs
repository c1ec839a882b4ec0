//! The embedded default sink: a local directory laid out exactly like the ADLS filesystem.
//!
//! A file is written to a temporary name in `<container>/_tmp/` (lake readers skip names
//! starting with `_`), flushed to disk, then hard-linked to its final name. `link` fails if
//! the name exists, so publishing is atomic *and* never replaces a file: a redelivered
//! event finds its file present and is counted as such. Where hard links are not supported
//! the file is renamed into place instead (same atomicity; identical content, so replacing
//! is harmless). The parent directory is then flushed so the new name survives a crash.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{Sink, SinkError, Stored};
use crate::domain::LakePath;

/// Temporary files older than this at start-up belong to a process that died mid-write.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// A lake in a local directory: `<lake dir>/<container>/<path>`.
#[derive(Debug, Clone)]
pub struct LocalLake {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    container_root: PathBuf,
    temp_dir: PathBuf,
    /// Flush files and directories to disk before acknowledging. Only tests and
    /// benchmarks that measure everything else turn this off.
    durable: bool,
    next_temp: AtomicU64,
}

impl LocalLake {
    /// Opens (creating if needed) the container directory and removes temporary files
    /// left behind by a crashed process.
    pub fn open(lake_dir: &Path, container: &str, durable: bool) -> io::Result<LocalLake> {
        let container_root = lake_dir.join(container);
        let temp_dir = container_root.join("_tmp");
        fs::create_dir_all(&temp_dir)?;
        remove_stale_temp_files(&temp_dir);
        Ok(LocalLake {
            inner: Arc::new(Inner {
                container_root,
                temp_dir,
                durable,
                next_temp: AtomicU64::new(0),
            }),
        })
    }
}

#[async_trait]
impl Sink for LocalLake {
    async fn store(&self, path: &LakePath, contents: Vec<u8>) -> Result<Stored, SinkError> {
        let inner = Arc::clone(&self.inner);
        let path = path.clone();
        tokio::task::spawn_blocking(move || inner.store(&path, &contents))
            .await
            .map_err(|error| SinkError::Task(error.to_string()))?
    }

    fn describe(&self) -> String {
        format!("local lake at {}", self.inner.container_root.display())
    }
}

impl Inner {
    fn store(&self, path: &LakePath, contents: &[u8]) -> Result<Stored, SinkError> {
        let target = path.under(&self.container_root);
        let error = |operation, source| SinkError::Io {
            operation,
            path: path.to_string(),
            source,
        };
        // Fast path for redeliveries: no temporary file at all.
        if fs::symlink_metadata(&target).is_ok() {
            return Ok(Stored::AlreadyPresent);
        }
        let parent =
            path.parent_segments()
                .iter()
                .fold(self.container_root.clone(), |mut dir, segment| {
                    dir.push(segment.as_str());
                    dir
                });
        fs::create_dir_all(&parent).map_err(|e| error("creating folder for", e))?;

        let temp = self.temp_dir.join(format!(
            "{}-{}.tmp",
            std::process::id(),
            self.next_temp.fetch_add(1, Ordering::Relaxed)
        ));
        let outcome = self
            .write_temp(&temp, contents)
            .map_err(|e| error("writing", e))
            .and_then(|()| publish(&temp, &target).map_err(|e| error("publishing", e)));
        // The temporary name is gone after a rename; after a link or a failure it is not.
        let _ = fs::remove_file(&temp);
        let stored = outcome?;
        if stored == Stored::Written && self.durable {
            sync_dir(&parent).map_err(|e| error("flushing folder of", e))?;
        }
        Ok(stored)
    }

    fn write_temp(&self, temp: &Path, contents: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(temp)?;
        file.write_all(contents)?;
        if self.durable {
            file.sync_data()?;
        }
        Ok(())
    }
}

/// Gives the complete temporary file its final name without replacing an existing file.
fn publish(temp: &Path, target: &Path) -> io::Result<Stored> {
    match fs::hard_link(temp, target) {
        Ok(()) => Ok(Stored::Written),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Stored::AlreadyPresent),
        Err(e) if links_unsupported(&e) => fs::rename(temp, target).map(|()| Stored::Written),
        Err(e) => Err(e),
    }
}

fn links_unsupported(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
    ) || error.raw_os_error() == Some(95) // EOPNOTSUPP on Linux file systems without links
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Windows has no directory handles to flush; NTFS journals the rename itself.
    Ok(())
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

    fn path(names: &[&str]) -> LakePath {
        LakePath::new(names.iter().map(|n| Segment::encode(n)).collect()).expect("non-empty")
    }

    #[tokio::test]
    async fn writes_once_and_reports_redeliveries() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = LocalLake::open(dir.path(), "container", true).expect("open");
        let target = path(&["changes", "db", "file.json"]);

        let first = lake.store(&target, b"{}\n".to_vec()).await.expect("stored");
        let second = lake.store(&target, b"{}\n".to_vec()).await.expect("stored");

        assert_eq!((first, second), (Stored::Written, Stored::AlreadyPresent));
        let file = dir.path().join("container/changes/db/file.json");
        assert_eq!(fs::read(file).expect("file"), b"{}\n");
        let leftovers = fs::read_dir(dir.path().join("container/_tmp"))
            .expect("tmp")
            .count();
        assert_eq!(leftovers, 0, "temporary files are removed");
    }

    #[tokio::test]
    async fn concurrent_duplicates_leave_one_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = LocalLake::open(dir.path(), "c", true).expect("open");
        let target = path(&["x.json"]);
        let attempts = (0..16).map(|_| {
            let lake = lake.clone();
            let target = target.clone();
            tokio::spawn(async move { lake.store(&target, b"same\n".to_vec()).await })
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

    #[tokio::test]
    async fn failures_are_errors_not_successes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = LocalLake::open(dir.path(), "c", true).expect("open");
        // A file where a folder must go makes the write fail.
        fs::write(dir.path().join("c/blocked"), b"").expect("blocker");
        let result = lake
            .store(&path(&["blocked", "x.json"]), b"{}".to_vec())
            .await;
        assert!(matches!(result, Err(SinkError::Io { .. })), "{result:?}");
    }
}
