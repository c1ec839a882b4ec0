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
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use tokio::io::AsyncReadExt;

use super::failure::Failure;
use super::{give_up, is_taken, Inner, TEMP_FOLDER};
use crate::domain::LakePath;
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
    let retry_until = inner.retry_until();
    if size <= SINGLE_PUT_MAX {
        let contents = tokio::fs::read(spooled).await.map_err(local)?;
        return inner
            .store_with_retries(path, Bytes::from(contents), retry_until)
            .await;
    }
    let key = inner.key(path.segments());
    let temp = inner.temp_key(path);
    let outcome = inner
        .send_with_retries(retry_until, || async {
            upload(inner, &temp, spooled).await?;
            match inner.store.copy_if_not_exists(&temp, &key).await {
                Ok(()) => Ok(Stored::Written),
                Err(error) if is_taken(&error) => Ok(Stored::AlreadyPresent),
                Err(error) => {
                    let failure = Failure::of("publishing")(error);
                    if failure.is_transient() && inner.found_in_place(&key, size).await {
                        return Ok(Stored::Written);
                    }
                    Err(failure)
                }
            }
        })
        .await;
    // Best effort: a leftover is hidden and harmless.
    let _ = inner.store.delete(&temp).await;
    outcome.map_err(|failure| give_up(&failure, &path.to_string(), failure.is_transient()))
}

/// Uploads the file to `temp` in parts, one part in memory at a time.
async fn upload(inner: &Inner, temp: &Path, spooled: &LocalPath) -> Result<(), Failure> {
    let mut upload = inner
        .store
        .put_multipart(temp)
        .await
        .map_err(Failure::of("starting upload"))?;
    let sent = async {
        let mut file = tokio::fs::File::open(spooled)
            .await
            .map_err(local_failure)?;
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
            upload
                .put_part(PutPayload::from(part))
                .await
                .map_err(Failure::of("uploading part"))?;
        }
        upload
            .complete()
            .await
            .map_err(Failure::of("completing upload"))?;
        Ok(())
    }
    .await;
    if sent.is_err() {
        let _ = upload.abort().await;
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
        let mut bytes = [0u8; 16];
        let _ = getrandom::getrandom(&mut bytes);
        let suffix: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        let name = format!("{}.{suffix}", path.file_name().as_str());
        let parts = self
            .prefix
            .iter()
            .map(String::as_str)
            .chain([TEMP_FOLDER, name.as_str()])
            .map(object_store::path::PathPart::from);
        Path::from_iter(parts)
    }
}
