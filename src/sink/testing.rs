//! Test doubles for passes over a sink: a store that stops working at a chosen
//! operation, as a pass killed there would leave it (compaction and mirror tests).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{LakeFile, ListPages, Sink, SinkError, Stored};
use crate::domain::{LakePath, Segment};

/// Fails the `fail_at`-th storage operation (counting from 1) and every one after it,
/// as a pass killed at that point would leave the lake.
pub struct Stopping {
    inner: Arc<dyn Sink>,
    operations: AtomicU64,
    fail_at: u64,
}

impl Stopping {
    pub fn new(inner: Arc<dyn Sink>, fail_at: u64) -> Stopping {
        Stopping {
            inner,
            operations: AtomicU64::new(0),
            fail_at,
        }
    }

    /// Operations asked of the store so far.
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::SeqCst)
    }

    fn tick(&self) -> Result<(), SinkError> {
        let n = self.operations.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.fail_at {
            Err(SinkError::Storage {
                operation: "test",
                path: String::new(),
                detail: "stopped".to_owned(),
                retryable: true,
            })
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Sink for Stopping {
    async fn store_all(&self, files: Vec<LakeFile>) -> Vec<Result<Stored, SinkError>> {
        let mut results = Vec::new();
        for file in files {
            match self.tick() {
                Ok(()) => results.extend(self.inner.store_all(vec![file]).await),
                Err(error) => results.push(Err(error)),
            }
        }
        results
    }
    fn list(&self, folder: &[Segment]) -> ListPages {
        match self.tick() {
            Ok(()) => self.inner.list(folder),
            Err(error) => Box::pin(futures_util::stream::once(async move { Err(error) })),
        }
    }
    async fn read(&self, path: &LakePath) -> Result<Bytes, SinkError> {
        self.tick()?;
        self.inner.read(path).await
    }
    async fn delete(&self, path: &LakePath) -> Result<(), SinkError> {
        self.tick()?;
        self.inner.delete(path).await
    }
    async fn folders(&self, folder: &[Segment]) -> Result<Vec<Segment>, SinkError> {
        self.tick()?;
        self.inner.folders(folder).await
    }
    async fn store_spooled(
        &self,
        path: &LakePath,
        spooled: &std::path::Path,
    ) -> Result<Stored, SinkError> {
        self.tick()?;
        self.inner.store_spooled(path, spooled).await
    }
    fn describe(&self) -> String {
        "stopping".to_owned()
    }
    async fn probe(&self) -> Result<(), SinkError> {
        self.tick()?;
        self.inner.probe().await
    }
}

/// Every file under `dir`, in its whole tree (none when it is missing).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
