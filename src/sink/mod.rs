//! Where records are stored. The HTTP layer, the ingest service and (issue #9) compaction
//! only know this trait; the local lake and ADLS Gen2 are implementations beside each other.
//! Writing is write-once ([`Sink::store_all`]); listing, reading and deleting are what a
//! pass over stored files needs, with no storage detail (temporary areas, continuation
//! tokens, retries) showing through.

mod adls;
mod backoff;
mod group_sync;
mod health;
mod local;
mod retry_count;
mod s3;
#[cfg(test)]
pub mod testing;

pub use adls::{identity_credential, AdlsSink, ClientError, APPEND_CHUNK};
pub use health::{Observation, SinkHealth};
pub use local::LocalLake;
pub use retry_count::counting_retries;
pub use s3::{S3ClientError, S3Sink, SINGLE_PUT_MAX};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::domain::{LakePath, Segment};

/// What a successful store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The file was created by this call.
    Written,
    /// A file was already at the path: the same event was stored before (paths and contents
    /// are deterministic), so nothing was written and the event counts as stored.
    AlreadyPresent,
}

/// A storage operation that did not happen. Nothing half-written is ever visible at a final
/// path, so every failed write may be retried; [`SinkError::is_retryable`] says whether
/// retrying soon can help.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A storage service request failed (after retries, or at once when retrying is
    /// pointless); `detail` says why and, when known, what to do. It never holds secrets.
    #[error("{operation} {path}: {detail}")]
    Storage {
        operation: &'static str,
        path: String,
        detail: String,
        /// The last failure was transient (busy, unreachable) and only the retry budget
        /// ended; `false` for failures that repeat until someone acts (auth, permissions).
        retryable: bool,
    },
    /// A file to read is not there (deleted since it was listed, or never written).
    #[error("{operation} {path}: no such file")]
    NotFound {
        operation: &'static str,
        path: String,
    },
    #[error("storage task failed: {0}")]
    Task(String),
}

impl SinkError {
    /// The failure without the path (which holds the document's `_id`), for logs.
    pub fn cause(&self) -> String {
        match self {
            SinkError::Io {
                operation, source, ..
            } => format!("{operation}: {source}"),
            SinkError::Storage {
                operation, detail, ..
            } => format!("{operation}: {detail}"),
            SinkError::NotFound { operation, .. } => format!("{operation}: no such file"),
            SinkError::Task(reason) => reason.clone(),
        }
    }

    /// Whether the same operation may succeed if tried again later without anyone fixing
    /// anything: local I/O errors (a full disk frees up) and transient storage failures
    /// are; a refused credential and a missing file are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Io { .. } | SinkError::Task(_) => true,
            SinkError::Storage { retryable, .. } => *retryable,
            SinkError::NotFound { .. } => false,
        }
    }
}

/// Reads a store answers at once in [`Sink::read_all`]'s default: enough to hide a
/// network store's latency.
pub const READS_IN_FLIGHT: usize = 32;

/// One file found by [`Sink::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The file's path in the container, as [`Sink::read`] and [`Sink::delete`] take it.
    pub path: LakePath,
    /// Its length in bytes.
    pub size: u64,
}

/// The files under a folder, a page at a time, in no guaranteed order. Each page is
/// non-empty; the stream ends after the last page or after the first error.
pub type ListPages = BoxStream<'static, Result<Vec<Listed>, SinkError>>;

/// One file to store: where, and its complete contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeFile {
    pub path: LakePath,
    pub contents: Vec<u8>,
}

/// Stores complete files, each exactly once.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Makes each file's contents visible at its path atomically, unless a file is already
    /// there. A reader sees either no file or the complete file, never a part of it, and
    /// an `Ok` means the file is durable. Returns one result per file, in order; a sink
    /// decides how much of the work runs at once.
    async fn store_all(&self, files: Vec<LakeFile>) -> Vec<Result<Stored, SinkError>>;

    /// Every file under `folder` (the container root when empty), in its whole tree, a
    /// page at a time so that a folder of a million files never needs a million entries
    /// at once. Only complete, published files: the store's temporary areas and folders
    /// are left out. A missing folder lists nothing. Files written or deleted while the
    /// listing runs may or may not be in it.
    fn list(&self, folder: &[Segment]) -> ListPages;

    /// The whole contents of a file (meant for change files: kilobytes to a few
    /// megabytes). [`SinkError::NotFound`] when it is not there.
    async fn read(&self, path: &LakePath) -> Result<Bytes, SinkError>;

    /// Reads many files: one result per path, in order. The default reads
    /// [`READS_IN_FLIGHT`] at a time; a store where a read is a blocking system call
    /// reads them together on one thread, as [`Sink::store_all`] writes (a task per
    /// small file costs more than the read).
    async fn read_all(&self, paths: Vec<LakePath>) -> Vec<Result<Bytes, SinkError>> {
        use futures_util::StreamExt;
        futures_util::stream::iter(paths)
            .map(|path| async move { self.read(&path).await })
            .buffered(READS_IN_FLIGHT)
            .collect()
            .await
    }

    /// Removes a file. A file that is not there is not an error: deleting twice, or after
    /// another process did, succeeds.
    async fn delete(&self, path: &LakePath) -> Result<(), SinkError>;

    /// The names of the folders directly under `folder` (not files, not deeper), in no
    /// guaranteed order. A missing folder has none. Hidden and temporary folders the
    /// store keeps for itself are left out, as in [`Sink::list`].
    async fn folders(&self, folder: &[Segment]) -> Result<Vec<Segment>, SinkError>;

    /// Stores a file whose contents were written to local disk first (`spooled`, a
    /// complete file on the worker's temporary disk), for files too large to hold in
    /// memory: compaction's parts. The same write-once contract as
    /// [`Sink::store_all`]: complete or absent, never replacing a file already at `path`
    /// ([`Stored::AlreadyPresent`], whatever its contents). Memory stays bounded whatever
    /// the file's size. The local lake may make `spooled` itself the lake file (a hard
    /// link, when both are on one file system): the caller may delete its name afterwards,
    /// but must not write to it again.
    async fn store_spooled(
        &self,
        path: &LakePath,
        spooled: &std::path::Path,
    ) -> Result<Stored, SinkError>;

    /// Where records go, for the start-up log line (no secrets).
    fn describe(&self) -> String;

    /// One cheap check that the store is there and answers, without retries: what the
    /// health answer relies on between writes (ADLS: the filesystem's properties; the
    /// local lake: a file can be made in its folder).
    async fn probe(&self) -> Result<(), SinkError>;

    /// Checks that the store keeps the first file at a path, refusing a second write (the
    /// write-once contract of [`Sink::store_all`]), which compaction's and the mirror's
    /// claims rely on to give each part one owner. A store that cannot break it (the
    /// local lake, ADLS) answers at once; one that could (an S3-compatible store that
    /// ignores `If-None-Match`) is tried once per process.
    async fn verify_write_once(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Stores one file ([`Sink::store_all`] of one).
    async fn store_one(&self, file: LakeFile) -> Result<Stored, SinkError> {
        self.store_all(vec![file])
            .await
            .pop()
            .unwrap_or_else(|| Err(SinkError::Task("the sink answered no result".to_owned())))
    }

    /// Stores an empty write-once file (a watermark, a marker); present already is fine.
    async fn store_marker(&self, path: LakePath) -> Result<(), SinkError> {
        self.store_one(LakeFile {
            path,
            contents: Vec::new(),
        })
        .await
        .map(drop)
    }

    /// Every path [`Sink::list`] gives for `folder`, gathered (for folders of state files,
    /// not for change folders of unknown size).
    async fn list_paths(&self, folder: &[Segment]) -> Result<Vec<LakePath>, SinkError> {
        use futures_util::TryStreamExt;
        let mut paths = Vec::new();
        let mut pages = self.list(folder);
        while let Some(page) = pages.try_next().await? {
            paths.extend(page.into_iter().map(|listed| listed.path));
        }
        Ok(paths)
    }
}
