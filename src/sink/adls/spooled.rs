//! Storing a file spooled to local disk (compaction's parts: up to several GB) with the
//! protocol of single files: a fresh temporary name under `<directory>/_tmp`, create,
//! append, flush, a rename that never replaces, and the check of the final path after a
//! lost answer. The difference is the appends: one per [`APPEND_CHUNK`], each read from the file
//! at its offset when it is sent, so memory holds a chunk whatever the file's size.
//!
//! A failed request is retried on its own, not the whole file: every append names its
//! `position`, so an append sent again (its answer lost, or the first one still on its way)
//! puts the same bytes at the same place, which the service accepts until the flush;
//! nothing can be doubled. The one flush commits exactly the file's length, so a gap or
//! an overlap fails it (400 `InvalidFlushPosition`) instead of being committed.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use azure_storage_datalake::clients::FileClient;
use bytes::Bytes;
use tokio::time::Instant;

use super::retry::{is_transient, Retries};
use super::{discard, Failure, Inner, Published};
use crate::domain::{lake_path, LakePath};
use crate::sink::backoff::upload_allowance;
use crate::sink::{SinkError, Stored};

/// Bytes per append request: large enough that a GB costs about a hundred requests (each
/// billed, each a round trip), small enough to hold one in memory, to resend one cheaply
/// and to send one within the request timeout on a slow link (8 MiB in 30 s is 2 Mbit/s).
pub const APPEND_CHUNK: u64 = 8 * 1024 * 1024;

/// Why an attempt stopped.
enum Stop {
    /// A storage request failed for good, or its retries ran out.
    Storage(Failure),
    /// The spooled file could not be read: nothing to retry.
    Reading(std::io::Error),
}

impl Inner {
    /// Stores the spooled file at `path`, within a deadline that grows with its size (see
    /// [`upload_allowance`]).
    pub(super) async fn store_spooled(
        &self,
        path: &LakePath,
        spooled: &Path,
    ) -> Result<Stored, SinkError> {
        let text = path.to_string();
        let reading = |source| SinkError::Io {
            operation: "reading the spooled file for",
            path: text.clone(),
            source,
        };
        let length = tokio::fs::metadata(spooled).await.map_err(reading)?.len();
        let retry_until = Instant::now() + self.settings.retry_budget + upload_allowance(length);
        let deadline = retry_until + 2 * self.settings.request_timeout;
        let attempts = self.spooled_with_retries(path, &text, spooled, length, retry_until);
        match tokio::time::timeout_at(deadline, attempts).await {
            Ok(Ok(stored)) => Ok(stored),
            Ok(Err(Stop::Reading(source))) => Err(reading(source)),
            Ok(Err(Stop::Storage(failure))) => {
                let retryable = is_transient(&failure.error) || restarts_help(&failure);
                Err(self.give_up(&failure, &text, retryable))
            }
            Err(_) => Err(SinkError::Storage {
                operation: "storing",
                path: text,
                detail: "gave up at the deadline for a file of this size (STORAGE_RETRY_BUDGET_SECS plus two STORAGE_REQUEST_TIMEOUT_SECS plus a second per 4 MiB)".into(),
                retryable: true,
            }),
        }
    }

    /// Attempts until one publishes the file. Each request is retried within an attempt;
    /// a new attempt (a fresh temporary file) follows only when the temporary file
    /// vanished or the filesystem had to be created.
    async fn spooled_with_retries(
        &self,
        path: &LakePath,
        text: &str,
        spooled: &Path,
        length: u64,
        retry_until: Instant,
    ) -> Result<Stored, Stop> {
        let folder = lake_path::join(path.parent_segments());
        let name = path.file_name().as_str();
        let mut restarts = Retries::until(retry_until);
        loop {
            let target = Target {
                path: text,
                folder: &folder,
                name,
                spooled,
                length,
            };
            let failure = match self.spooled_attempt(&target, retry_until).await {
                Ok(published) => return Ok(published.stored()),
                Err(Stop::Storage(failure)) => failure,
                Err(stop) => return Err(stop),
            };
            let restart = match failure.code() {
                Some("FilesystemNotFound") if self.settings.create_filesystem => {
                    self.create_filesystem().await
                }
                _ => restarts_help(&failure),
            };
            if !restarts
                .wait(failure.operation, &failure.error, restart)
                .await
            {
                return Err(Stop::Storage(failure));
            }
        }
    }

    /// One attempt: the folder, a fresh temporary file filled and committed, the rename.
    /// The temporary file is deleted unless it became the final file.
    async fn spooled_attempt(
        &self,
        target: &Target<'_>,
        retry_until: Instant,
    ) -> Result<Published, Stop> {
        self.send_with_retries(self.step_until(retry_until), || {
            self.ensure_folder(target.folder)
        })
        .await
        .map_err(Stop::Storage)?;
        let temp = self.temp_file(target.name);
        let outcome = match self.upload(&temp, target, retry_until).await {
            Ok(()) => self
                .send_with_retries(self.step_until(retry_until), || {
                    self.publish(&temp, target.path, target.folder, target.length)
                })
                .await
                .map_err(Stop::Storage),
            Err(stop) => Err(stop),
        };
        if !matches!(outcome, Ok(Published::Renamed)) {
            discard(&temp).await;
        }
        outcome
    }

    /// Creates `temp` and fills it with the spooled file, committed: complete, but still
    /// under its temporary name.
    async fn upload(
        &self,
        temp: &FileClient,
        target: &Target<'_>,
        retry_until: Instant,
    ) -> Result<(), Stop> {
        self.send_with_retries(self.step_until(retry_until), || async {
            temp.create()
                .await
                .map(drop)
                .map_err(Failure::of("creating"))
        })
        .await
        .map_err(Stop::Storage)?;
        let mut offset = 0;
        while offset < target.length {
            let size = APPEND_CHUNK.min(target.length - offset);
            let position = i64::try_from(offset).unwrap_or(i64::MAX);
            // A read error ends the retries at once (`Ok(Err)`): the local file is gone.
            let appended = self
                .send_with_retries(self.step_until(retry_until), || async move {
                    let chunk = match read_chunk(target.spooled.to_path_buf(), offset, size).await {
                        Ok(chunk) => chunk,
                        Err(error) => return Ok(Err(error)),
                    };
                    temp.append(position, chunk)
                        .await
                        .map(|_| Ok(()))
                        .map_err(Failure::of("appending"))
                })
                .await;
            match appended {
                Ok(Ok(())) => offset += size,
                Ok(Err(error)) => return Err(Stop::Reading(error)),
                Err(failure) => return Err(Stop::Storage(failure)),
            }
        }
        let length = i64::try_from(target.length).unwrap_or(i64::MAX);
        self.send_with_retries(self.step_until(retry_until), || async move {
            temp.flush(length)
                .await
                .map(drop)
                .map_err(Failure::of("flushing"))
        })
        .await
        .map_err(Stop::Storage)
    }

    /// Until when one request (a step of the upload) may be retried: the retry budget from
    /// now, as for a single file, but never past the file's own end of retries.
    fn step_until(&self, retry_until: Instant) -> Instant {
        (Instant::now() + self.settings.retry_budget).min(retry_until)
    }
}

/// What one attempt stores.
struct Target<'a> {
    /// The final path, as the service names it.
    path: &'a str,
    folder: &'a str,
    name: &'a str,
    spooled: &'a Path,
    length: u64,
}

/// Whether a fresh attempt may succeed after this failure: the temporary file vanished
/// (a cleanup rule on `_tmp`, say) before its append, flush or rename.
fn restarts_help(failure: &Failure) -> bool {
    matches!(failure.code(), Some("PathNotFound" | "SourcePathNotFound"))
}

/// `size` bytes of the spooled file from `offset`, read on the blocking pool.
async fn read_chunk(spooled: PathBuf, offset: u64, size: u64) -> std::io::Result<Bytes> {
    let read = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(spooled)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut chunk = vec![0; usize::try_from(size).map_err(std::io::Error::other)?];
        file.read_exact(&mut chunk)?;
        Ok(Bytes::from(chunk))
    });
    read.await.map_err(std::io::Error::other)?
}
