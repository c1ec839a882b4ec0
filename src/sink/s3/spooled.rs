//! Large files (compaction's parts) from local disk, in bounded memory.
//!
//! A file up to [`SINGLE_PUT_MAX`] is one conditional put, like any other. A larger one
//! cannot be: a put's body is held in memory, and S3 takes no `If-None-Match` on a plain
//! multipart upload through this client. So it is uploaded in parts to a hidden
//! temporary key, then copied onto its final key by a one-part multipart upload
//! (`UploadPartCopy`) whose completion is conditional (`If-None-Match: *` on
//! `CompleteMultipartUpload`): S3 makes the final object appear complete or not at all,
//! and a 412 means it was there already. The temporary object is deleted afterwards
//! (a leftover lives in the hidden `_tmp` folder; a lifecycle rule can expire it).

use std::path::Path as LocalPath;

use bytes::Bytes;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::failure::Failure;
use super::{give_up, is_taken, Inner, TEMP_FOLDER};
use crate::domain::LakePath;
use crate::sink::backoff::upload_allowance;
use crate::sink::{SinkError, Stored};

/// The largest file stored with one put (read into memory whole).
pub const SINGLE_PUT_MAX: u64 = 16 * 1024 * 1024;
/// Each part of a larger file's upload (S3 wants at least 5 MiB but for the last).
const PART: usize = 8 * 1024 * 1024;

pub(super) async fn store(
    inner: &Inner,
    path: &LakePath,
    spooled: &LocalPath,
) -> Result<Stored, SinkError> {
    let local = |source| SinkError::Io {
        operation: "reading spooled file",
        path: spooled.display().to_string(),
        source,
    };
    let size = tokio::fs::metadata(spooled).await.map_err(local)?.len();
    // A large file's budget grows with its size, as on ADLS: the retry budget is for
    // waiting out failures, not for moving gigabytes.
    let retry_until = inner.retry_until() + upload_allowance(size);
    if size <= SINGLE_PUT_MAX {
        let contents = tokio::fs::read(spooled).await.map_err(local)?;
        return inner
            .store_with_retries(path, Bytes::from(contents), retry_until)
            .await;
    }
    let key = inner.key(path.segments());
    let temp = inner.temp_key(path);
    let outcome = async {
        upload(inner, &temp, spooled, size, retry_until).await?;
        inner
            .send_with_retries(retry_until, || publish(inner, &temp, &key, size))
            .await
    }
    .await;
    // Best effort: a leftover is hidden and harmless.
    let _ = inner.store.delete(&temp).await;
    outcome.map_err(|failure| give_up(&failure, &path.to_string()))
}

/// Copies the uploaded `temp` onto `key` unless something is there: one conditional
/// multipart copy, on the client whose timeout allows a server-side copy of gigabytes.
async fn publish(inner: &Inner, temp: &Path, key: &Path, size: u64) -> Result<Stored, Failure> {
    match inner.copy_store.copy_if_not_exists(temp, key).await {
        Ok(()) => Ok(Stored::Written),
        Err(error) if is_taken(&error) => Ok(Stored::AlreadyPresent),
        Err(error) => {
            let failure = Failure::of("publishing")(error);
            // A part's bytes are fixed by its claim: the length tells a lost answer.
            if failure.is_transient() && inner.found_in_place(key, size).await {
                return Ok(Stored::Written);
            }
            Err(failure)
        }
    }
}

/// Uploads the file to `temp` in parts, one part in memory at a time; each step is
/// retried on its own (a part again under its own number), so a failure late in a large
/// file costs one part, not the file.
async fn upload(
    inner: &Inner,
    temp: &Path,
    spooled: &LocalPath,
    size: u64,
    retry_until: Instant,
) -> Result<(), Failure> {
    let store = &inner.store;
    let id = inner
        .send_with_retries(retry_until, || async {
            store
                .create_multipart(temp)
                .await
                .map_err(Failure::of("starting upload"))
        })
        .await?;
    let sent = async {
        let mut file = tokio::fs::File::open(spooled)
            .await
            .map_err(local_failure)?;
        let mut parts = Vec::new();
        loop {
            let mut part = Vec::with_capacity(PART);
            (&mut file)
                .take(PART as u64)
                .read_to_end(&mut part)
                .await
                .map_err(local_failure)?;
            if part.is_empty() {
                break;
            }
            let payload = PutPayload::from(part);
            let index = parts.len();
            let part_id = inner
                .send_with_retries(retry_until, || async {
                    store
                        .put_part(temp, &id, index, payload.clone())
                        .await
                        .map_err(Failure::of("uploading part"))
                })
                .await?;
            parts.push(part_id);
        }
        inner
            .send_with_retries(retry_until, || async {
                match store.complete_multipart(temp, &id, parts.clone()).await {
                    Ok(_) => Ok(()),
                    Err(error) => {
                        let failure = Failure::of("completing upload")(error);
                        // A completion whose answer was lost ends the upload: a retry
                        // finds no upload, and the object in place says it completed.
                        if inner.found_in_place(temp, size).await {
                            return Ok(());
                        }
                        Err(failure)
                    }
                }
            })
            .await
    }
    .await;
    if sent.is_err() {
        let _ = store.abort_multipart(temp, &id).await;
    }
    sent
}

/// A local read error, as a failure that is never retried.
fn local_failure(error: std::io::Error) -> Failure {
    Failure::of("reading spooled file")(object_store::Error::NotSupported {
        source: Box::new(error),
    })
}

impl Inner {
    /// A fresh hidden key for `path`'s upload: `<prefix>/_tmp/<name>.<random>`.
    fn temp_key(&self, path: &LakePath) -> Path {
        self.temp_key_named(path.file_name().as_str())
    }

    /// A fresh hidden key `<prefix>/_tmp/<name>.<random>`.
    pub(super) fn temp_key_named(&self, name: &str) -> Path {
        let mut bytes = [0u8; 16];
        let _ = getrandom::getrandom(&mut bytes);
        let suffix: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let name = format!("{name}.{suffix}");
        let parts = self
            .prefix
            .iter()
            .map(String::as_str)
            .chain([TEMP_FOLDER, name.as_str()])
            .map(object_store::path::PathPart::from);
        Path::from_iter(parts)
    }
}
