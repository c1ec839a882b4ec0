//! Where records are stored. The HTTP layer and the ingest service only know this trait;
//! the local lake and ADLS Gen2 are implementations beside each other.

mod adls;
mod group_sync;
mod local;

pub use adls::{AdlsSink, ClientError};
pub use local::LocalLake;

use async_trait::async_trait;

use crate::domain::LakePath;

/// What a successful store did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The file was created by this call.
    Written,
    /// A file was already at the path: the same event was stored before (paths and contents
    /// are deterministic), so nothing was written and the event counts as stored.
    AlreadyPresent,
}

/// A store that did not happen. Always worth retrying from the caller's point of view:
/// nothing half-written is ever visible at a final path.
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
            SinkError::Task(reason) => reason.clone(),
        }
    }
}

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

    /// Where records go, for the start-up log line (no secrets).
    fn describe(&self) -> String;
}
