//! The one-request write (`STORAGE_WRITE_PROTOCOL=blob`): a Put Blob with `If-None-Match:
//! *` on the account's Blob endpoint. The service makes a Put Blob's contents visible
//! all at once, so no temporary name or rename is needed, and the condition keeps the
//! first file at a path: 409 `BlobAlreadyExists` (or 412) means the same event was stored
//! before (names and contents are deterministic).
//!
//! A Put Blob whose answer was lost (no answer, or a 500/502/504: the write may have
//! happened) makes the next attempt's 409 ambiguous: this write, or an earlier one? Reading
//! the file back settles it: this file's bytes are this write, stored. Bytes, not the
//! length: a compaction or mirror claim taken by a rival pass can have the same length,
//! and must come back `AlreadyPresent`.

use std::sync::atomic::{AtomicBool, Ordering};

use azure_storage_datalake::clients::FileClient;
use bytes::Bytes;

use super::client;
use super::retry::status_and_code;
use super::Failure;
use crate::sink::Stored;

/// The attempts at putting one file: its blob, its contents, and whether an earlier
/// attempt's answer was lost.
pub(super) struct PutOnce<'a> {
    blob: FileClient,
    /// The same file on the DFS endpoint, to read it back.
    file: FileClient,
    contents: &'a Bytes,
    answer_lost: AtomicBool,
}

impl<'a> PutOnce<'a> {
    pub(super) fn new(blob: FileClient, file: FileClient, contents: &'a Bytes) -> PutOnce<'a> {
        PutOnce {
            blob,
            file,
            contents,
            answer_lost: AtomicBool::new(false),
        }
    }

    /// One Put Blob. A path already taken is success: `Written` when an earlier attempt
    /// of this call may have written it and the file holds this file's bytes, otherwise
    /// `AlreadyPresent`.
    pub(super) async fn attempt(&self) -> Result<Stored, Failure> {
        let error = match client::put_blob_if_absent(&self.blob, self.contents).await {
            Ok(()) => return Ok(Stored::Written),
            Err(error) => error,
        };
        match status_and_code(&error) {
            Some((409, Some("BlobAlreadyExists")) | (412, _)) => Ok(self.taken().await),
            answer => {
                if answer_may_be_lost(answer.map(|(status, _)| status)) {
                    self.answer_lost.store(true, Ordering::Relaxed);
                }
                Err(Failure::of("writing")(error))
            }
        }
    }

    /// Whose file is at the path: this call's (an earlier answer was lost and the file
    /// holds these bytes) or an earlier store's.
    async fn taken(&self) -> Stored {
        if !self.answer_lost.load(Ordering::Relaxed) {
            return Stored::AlreadyPresent;
        }
        match client::read_whole(&self.file).await {
            Ok(found) if found == *self.contents => Stored::Written,
            // Other bytes, or no answer: a file is there either way. `AlreadyPresent` is
            // the safe answer: for a change file it is the same event's, and a pass that
            // loses a claim this way looks again and finishes the part the claim names.
            _ => Stored::AlreadyPresent,
        }
    }
}

/// Whether a failed Put Blob may have been carried out: no answer at all, or a server
/// error that can come after the write (not a refusal, throttling or 503 before it).
fn answer_may_be_lost(status: Option<u16>) -> bool {
    matches!(status, None | Some(408 | 500 | 502 | 504))
}

#[cfg(test)]
mod tests {
    use super::answer_may_be_lost;

    #[test]
    fn only_a_missing_answer_or_a_late_server_error_may_hide_a_write() {
        assert!(answer_may_be_lost(None));
        assert!(answer_may_be_lost(Some(500)));
        assert!(answer_may_be_lost(Some(504)));
        assert!(
            !answer_may_be_lost(Some(503)),
            "busy: refused before writing"
        );
        assert!(!answer_may_be_lost(Some(403)));
    }
}
