//! The S3 sink: records land in a bucket (AWS, or an S3-compatible store) under the same
//! keys the local lake uses for its paths, after `S3_PREFIX`.
//!
//! S3 makes an object visible only when its upload completes, so there is no temporary
//! name and no rename: one conditional `PutObject` (`If-None-Match: *`) per file. A 412
//! means a file is there already: the same event was stored before (names and contents
//! are deterministic), so success. When a put gets no clear answer (a timeout, a reset
//! connection, a 5xx) or a 409 (a racing write of the same key), the object is read back:
//! this file's bytes mean it is stored; otherwise the put is retried.
//!
//! The client's own retries are off: they would replay a conditional put whose first
//! answer was lost and report the 412 of its own write as a failure, and they know
//! nothing of the time the caller has left. Retrying whole attempts here keeps every
//! retry safe, logged and bounded by one budget.

mod failure;
mod files;
mod spooled;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut, S3CopyIfNotExists};
use object_store::path::{Path, PathPart};
use object_store::{ClientOptions, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use self::failure::Failure;
use super::backoff::Backoff;
use super::{LakeFile, ListPages, Sink, SinkError, Stored};
use crate::configuration::S3Settings;
use crate::domain::{LakePath, Segment};

pub use self::spooled::SINGLE_PUT_MAX;

/// The hidden folder for large uploads before they are published, after the prefix.
const TEMP_FOLDER: &str = "_tmp";

/// The S3 client could not be built from the settings.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the S3 client: {0}")]
pub struct S3ClientError(object_store::Error);

/// The longest a server-side copy of a large file may take (S3 copies about 1 GB in
/// seconds to tens of seconds; a part is at most 5 GiB).
const COPY_TIMEOUT: Duration = Duration::from_secs(600);

/// Client options with `timeout` for each request and for connecting; plain HTTP only
/// for an `http://` endpoint (a local store).
fn client_options(settings: &S3Settings, timeout: Duration) -> ClientOptions {
    let http = settings
        .endpoint
        .as_deref()
        .is_some_and(|endpoint| endpoint.starts_with("http://"));
    ClientOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(timeout)
        .with_allow_http(http)
}

/// `https://<bucket>.<host>` for an endpoint `https://<host>`: the bucket's address in
/// virtual-hosted style.
fn virtual_hosted(endpoint: &str, bucket: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, host)) => format!("{scheme}://{bucket}.{host}"),
        None => format!("{bucket}.{endpoint}"),
    }
}

/// Writes records into an S3 bucket. Cheap to clone; one per process.
#[derive(Clone)]
pub struct S3Sink {
    inner: Arc<Inner>,
}

struct Inner {
    store: AmazonS3,
    /// The same bucket with a timeout for one request that moves gigabytes: the
    /// server-side copy that publishes a large file.
    copy_store: AmazonS3,
    settings: S3Settings,
    /// `S3_PREFIX`'s folders, before every lake path.
    prefix: Vec<String>,
    /// Bounds the requests in flight across all requests (and so the connections).
    permits: Semaphore,
    /// Set once the store was seen to refuse a second conditional put of one key.
    write_once: tokio::sync::OnceCell<()>,
}

impl S3Sink {
    /// Builds the client from settings and the AWS environment (the credential chain);
    /// no request is sent.
    pub fn new(settings: &S3Settings) -> Result<S3Sink, S3ClientError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
            .with_retry(RetryConfig {
                max_retries: 0,
                retry_timeout: settings.retry_budget,
                ..RetryConfig::default()
            });
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &settings.endpoint {
            // Virtual-hosted style takes the endpoint as the bucket's own address: the
            // bucket goes in front of the host, as S3's own names have it.
            let endpoint = if settings.path_style {
                endpoint.clone()
            } else {
                virtual_hosted(endpoint, &settings.bucket)
            };
            builder = builder.with_endpoint(endpoint);
        }
        builder = builder.with_virtual_hosted_style_request(!settings.path_style);
        if let Some(keys) = &settings.static_keys {
            builder = builder
                .with_access_key_id(&keys.access_key_id)
                .with_secret_access_key(keys.secret_access_key.expose());
            if let Some(token) = &keys.session_token {
                builder = builder.with_token(token.expose());
            }
        }
        // The builder's errors name settings, never secret values.
        let store = builder
            .clone()
            .with_client_options(client_options(settings, settings.request_timeout))
            .build()
            .map_err(S3ClientError)?;
        let copy_store = builder
            .with_client_options(client_options(
                settings,
                settings.request_timeout.max(COPY_TIMEOUT),
            ))
            .build()
            .map_err(S3ClientError)?;
        Ok(S3Sink {
            inner: Arc::new(Inner {
                store,
                copy_store,
                prefix: settings
                    .prefix
                    .iter()
                    .map(|segment| segment.as_str().to_owned())
                    .collect(),
                settings: settings.clone(),
                permits: Semaphore::new(settings.write_concurrency),
                write_once: tokio::sync::OnceCell::new(),
            }),
        })
    }
}

#[async_trait]
impl Sink for S3Sink {
    /// Writes the files at once (up to the process-wide concurrency), all within one
    /// deadline: the retry budget plus two request timeouts, as the ADLS sink does.
    async fn store_all(&self, files: Vec<LakeFile>) -> Vec<Result<Stored, SinkError>> {
        let inner = &self.inner;
        let retry_until = Instant::now() + inner.settings.retry_budget;
        let deadline = retry_until + 2 * inner.settings.request_timeout;
        futures_util::future::join_all(files.into_iter().map(|file| async move {
            let path = file.path.to_string();
            let contents = Bytes::from(file.contents);
            let store = inner.store_with_retries(&file.path, contents, retry_until);
            match tokio::time::timeout_at(deadline, store).await {
                Ok(outcome) => outcome,
                Err(_) => Err(past_deadline("storing", path)),
            }
        }))
        .await
    }

    fn list(&self, folder: &[Segment]) -> ListPages {
        files::list(Arc::clone(&self.inner), folder)
    }

    async fn read(&self, path: &LakePath) -> Result<Bytes, SinkError> {
        self.inner.read(path).await
    }

    async fn delete(&self, path: &LakePath) -> Result<(), SinkError> {
        self.inner.delete(path).await
    }

    async fn folders(&self, folder: &[Segment]) -> Result<Vec<Segment>, SinkError> {
        self.inner.folders(folder).await
    }

    async fn store_spooled(
        &self,
        path: &LakePath,
        spooled: &std::path::Path,
    ) -> Result<Stored, SinkError> {
        spooled::store(&self.inner, path, spooled).await
    }

    fn describe(&self) -> String {
        format!(
            "S3 {} ({})",
            self.inner.settings.location(),
            self.inner.settings.credential_kind()
        )
    }

    /// One listing of at most one key under the prefix: what a wrong credential, a
    /// missing bucket or a missing permission fails. No retries.
    /// Once per process: a hidden key put twice with `If-None-Match: *` must be refused
    /// the second time. Transient failures are not remembered (the next pass tries again).
    async fn verify_write_once(&self) -> Result<(), SinkError> {
        let inner = &self.inner;
        inner
            .write_once
            .get_or_try_init(|| inner.check_write_once())
            .await
            .map(drop)
    }

    async fn probe(&self) -> Result<(), SinkError> {
        let inner = &self.inner;
        let prefix = inner.key(&[]);
        match inner.store.list_with_delimiter(Some(&prefix)).await {
            Ok(_) => Ok(()),
            Err(error) => {
                let failure = Failure::of("checking bucket")(error);
                Err(give_up(&failure, &inner.settings.bucket))
            }
        }
    }
}

impl Inner {
    /// Puts one hidden key twice, conditionally: the second put must be refused (412).
    async fn check_write_once(&self) -> Result<(), SinkError> {
        let key = self.temp_key_named("write-once-check");
        let contents = Bytes::from_static(b"write-once check\n");
        let put = || self.put_with_retries(&key, &contents, self.retry_until());
        let outcome = match (put().await, put().await) {
            (Ok(_), Ok(Stored::AlreadyPresent)) => Ok(()),
            (Ok(_), Ok(Stored::Written)) => Err(SinkError::Storage {
                operation: "checking write-once",
                path: self.settings.bucket.clone(),
                detail: "the store accepted a second conditional PutObject of one key: it \
                         ignores `If-None-Match: *`, which compaction's and the mirror's \
                         claims need; this store (S3_ENDPOINT) is not supported for them"
                    .to_owned(),
                retryable: false,
            }),
            (Err(failure), _) | (_, Err(failure)) => Err(give_up(&failure, &self.settings.bucket)),
        };
        // Best effort: a leftover is hidden and harmless.
        let _ = self.store.delete(&key).await;
        outcome
    }

    /// The object key of lake path segments: the prefix, then the segments as they stand
    /// (never re-encoded, so keys equal the local lake's relative paths).
    fn key(&self, segments: &[Segment]) -> Path {
        let parts = self
            .prefix
            .iter()
            .map(String::as_str)
            .chain(segments.iter().map(Segment::as_str))
            // A segment is never empty, `.`, `..`, and holds no `/` or control character,
            // which is all `PathPart::parse` refuses; a part it did refuse is left out.
            .filter_map(|part| PathPart::parse(part).ok());
        Path::from_iter(parts)
    }

    /// Stores one file: conditional puts until one answers, retried while transient and
    /// `retry_until` allows.
    async fn store_with_retries(
        &self,
        path: &LakePath,
        contents: Bytes,
        retry_until: Instant,
    ) -> Result<Stored, SinkError> {
        let key = self.key(path.segments());
        self.put_with_retries(&key, &contents, retry_until)
            .await
            .map_err(|failure| give_up(&failure, &path.to_string()))
    }

    /// Conditional puts of `contents` at `key` until one answers, remembering across
    /// attempts whether an answer was lost.
    async fn put_with_retries(
        &self,
        key: &Path,
        contents: &Bytes,
        retry_until: Instant,
    ) -> Result<Stored, Failure> {
        let answer_lost = AtomicBool::new(false);
        self.send_with_retries(retry_until, || self.put_once(key, contents, &answer_lost))
            .await
    }

    /// One conditional put. When its answer is unclear (no answer, a 5xx, a 409 of a
    /// racing write) the object may be there: it is read back, and only this file's
    /// bytes count as this write. A later attempt's 412 after a lost answer is settled
    /// the same way. Comparing bytes, not lengths, matters for files that are not the
    /// same for every writer: a compaction or mirror claim taken by a rival pass must
    /// come back `AlreadyPresent`, never `Written`.
    async fn put_once(
        &self,
        key: &Path,
        contents: &Bytes,
        answer_lost: &AtomicBool,
    ) -> Result<Stored, Failure> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(contents.clone());
        match self.store.put_opts(key, payload, options).await {
            Ok(_) => Ok(Stored::Written),
            // 412: the key is taken; by this call only if an earlier answer was lost.
            Err(error) if is_taken(&error) => {
                if answer_lost.load(Ordering::Relaxed) && self.holds(key, contents).await {
                    Ok(Stored::Written)
                } else {
                    Ok(Stored::AlreadyPresent)
                }
            }
            Err(error) => {
                let racing = failure::is_conflict(&error);
                let failure = Failure::of("storing")(error);
                if failure.is_transient() {
                    if !racing {
                        answer_lost.store(true, Ordering::Relaxed);
                    }
                    if self.holds(key, contents).await {
                        return Ok(if racing {
                            Stored::AlreadyPresent
                        } else {
                            Stored::Written
                        });
                    }
                }
                Err(failure)
            }
        }
    }

    /// Whether the object at `key` is `contents`, byte for byte (a read that fails says
    /// no: the caller retries or reports the failure).
    async fn holds(&self, key: &Path, contents: &Bytes) -> bool {
        match self.store.get(key).await {
            Ok(found) if found.meta.size == contents.len() as u64 => {
                found.bytes().await.is_ok_and(|bytes| bytes == *contents)
            }
            _ => false,
        }
    }

    /// Whether an object of `length` bytes is at `key`: a large file (a compaction part,
    /// whose bytes are fixed by its claim) whose publishing answer was lost.
    async fn found_in_place(&self, key: &Path, length: u64) -> bool {
        self.store
            .head(key)
            .await
            .is_ok_and(|meta| meta.size == length)
    }

    /// Sends a request until it succeeds, fails for good or `retry_until` passes, holding
    /// a permit for each try (not across the waits) and logging each retry.
    async fn send_with_retries<T, F, Fut>(
        &self,
        retry_until: Instant,
        mut request: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut backoff = Backoff::until(retry_until);
        let mut attempt = 0u32;
        loop {
            let failure = {
                // The semaphore is never closed, so a permit always comes.
                let _permit = self.permits.acquire().await;
                match request().await {
                    Ok(value) => return Ok(value),
                    Err(failure) => failure,
                }
            };
            attempt += 1;
            let Some(delay) = backoff.next_delay().filter(|_| failure.is_transient()) else {
                return Err(failure);
            };
            // Never the key (it holds the `_id`) or the error's text (a URL).
            tracing::warn!(
                attempt,
                operation = failure.operation,
                cause = %failure.describe(),
                retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "storage attempt failed; retrying"
            );
            super::retry_count::count_retry();
            tokio::time::sleep(delay).await;
        }
    }

    /// A retry budget from now, for operations outside a request (reads, lists, deletes).
    fn retry_until(&self) -> Instant {
        Instant::now() + self.settings.retry_budget
    }
}

/// A 412 to a conditional write: the key holds an object already.
fn is_taken(error: &object_store::Error) -> bool {
    matches!(
        error,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    ) && !failure::is_conflict(error)
}

/// The error for a failure no more attempts will follow: retryable when it was transient.
fn give_up(failure: &Failure, path: &str) -> SinkError {
    SinkError::Storage {
        operation: failure.operation,
        path: path.to_owned(),
        detail: failure.describe(),
        retryable: failure.is_transient(),
    }
}

/// The error for an operation still unfinished at its deadline.
fn past_deadline(operation: &'static str, path: String) -> SinkError {
    SinkError::Storage {
        operation,
        path,
        detail: "gave up at the request deadline (STORAGE_RETRY_BUDGET_SECS plus two STORAGE_REQUEST_TIMEOUT_SECS)".into(),
        retryable: true,
    }
}

#[cfg(test)]
mod tests {
    use super::virtual_hosted;

    #[test]
    fn a_virtual_hosted_endpoint_puts_the_bucket_in_front_of_the_host() {
        assert_eq!(
            virtual_hosted("https://s3.example.com", "lake"),
            "https://lake.s3.example.com"
        );
        assert_eq!(
            virtual_hosted("http://127.0.0.1:9000/", "lake"),
            "http://lake.127.0.0.1:9000/"
        );
    }
}
