//! The ADLS Gen2 sink: records land in a filesystem (container) of a storage account.
//! Reads, listings and deletes go through the DFS endpoint; files are written one of two
//! ways (`STORAGE_WRITE_PROTOCOL`).
//!
//! `blob` (the default): one Put Blob with `If-None-Match: *` on the account's Blob
//! endpoint, which makes the whole file visible at once or refuses a path that is taken
//! (`blob`).
//!
//! `dfs`: the service makes a created file visible at once, empty, and fills it as data is
//! appended and flushed; a process that dies in between leaves an empty or short file, and
//! a retry that sees "already exists" would skip it. So each file is written in full under
//! a hidden temporary name (`<directory>/_tmp/<name>.<random>`; lake readers skip names
//! starting with `_`) and then renamed onto its final path only if nothing is there
//! (`If-None-Match: *`). The rename is atomic: a final path holds the complete file or
//! nothing. A 409 on it means the same event was stored before (names and contents are
//! deterministic): success.
//!
//! Each attempt uses a fresh temporary name, so a retry never collides with a request of an
//! earlier attempt that is still in flight. When a rename fails without a clear answer (a
//! timeout, a reset connection, a 5xx), the final path is looked at before the write is
//! called failed: the rename may have happened with its answer lost.
//!
//! Files spooled to local disk (compaction's parts) follow the DFS protocol a chunk at a
//! time, each request retried on its own (`spooled`), whichever protocol is set.

mod blob;
mod client;
mod diagnosis;
mod files;
mod identity_bridge;
mod retry;
mod spooled;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_storage_datalake::clients::{FileClient, FileSystemClient};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub use self::client::{identity_credential, ClientError};
use self::retry::{is_not_found, is_transient, status_and_code, Retries};
pub use self::spooled::APPEND_CHUNK;
use super::{LakeFile, ListPages, Sink, SinkError, Stored};
use crate::configuration::{AdlsSettings, WriteProtocol};
use crate::domain::{lake_path, LakePath, Segment};

/// The hidden folder for files being written, inside the configured directory.
const TEMP_FOLDER: &str = "_tmp";
/// Folders known to exist are remembered up to this many, then forgotten all at once (an
/// hour-partitioned layout adds one per collection and hour).
const MAX_KNOWN_FOLDERS: usize = 10_000;

/// Writes records into an ADLS Gen2 filesystem. Cheap to clone; one per process.
#[derive(Clone)]
pub struct AdlsSink {
    inner: Arc<Inner>,
}

struct Inner {
    filesystem: FileSystemClient,
    /// The filesystem on the Blob endpoint when files are written with Put Blob
    /// (`STORAGE_WRITE_PROTOCOL=blob`); `None` writes them through `filesystem`.
    blob: Option<FileSystemClient>,
    filesystem_name: String,
    settings: AdlsSettings,
    /// `<directory>/_tmp`.
    temp_folder: String,
    /// Bounds the files written at once across all requests (and so the connections).
    permits: Semaphore,
    /// Folders created (or found) already: renames need their destination folder to exist,
    /// and asking for it each time would cost a request per file.
    known_folders: Mutex<HashSet<String>>,
}

/// One failed storage request.
#[derive(Debug)]
struct Failure {
    operation: &'static str,
    error: azure_core::Error,
}

impl Failure {
    fn of(operation: &'static str) -> impl FnOnce(azure_core::Error) -> Failure {
        move |error| Failure { operation, error }
    }

    fn code(&self) -> Option<&str> {
        status_and_code(&self.error).and_then(|(_, code)| code)
    }
}

impl AdlsSink {
    /// Builds the client from settings; no request is sent. `directory` is the configured
    /// directory, under which temporary files are written.
    pub fn new(
        settings: &AdlsSettings,
        filesystem: &str,
        directory: &[Segment],
    ) -> Result<AdlsSink, ClientError> {
        AdlsSink::with_credentials(
            settings,
            client::credentials(settings)?,
            filesystem,
            directory,
        )
    }

    /// A sink on any DFS target reached with a bearer token: `settings` from
    /// [`AdlsSettings::entra`] (the endpoint, e.g. OneLake's
    /// `https://onelake.dfs.fabric.microsoft.com/`, and the limits), `filesystem` (OneLake:
    /// the workspace), `directory` (OneLake: `<item>`, `Files`, `LandingZone`) and a
    /// credential from [`identity_credential`]. No request is sent.
    pub fn with_token_credential(
        settings: &AdlsSettings,
        credential: Arc<dyn azure_core::auth::TokenCredential>,
        filesystem: &str,
        directory: &[Segment],
    ) -> Result<AdlsSink, ClientError> {
        AdlsSink::with_credentials(
            settings,
            azure_storage::StorageCredentials::token_credential(credential),
            filesystem,
            directory,
        )
    }

    /// As [`AdlsSink::new`], with credentials made elsewhere (tests use fixed tokens).
    pub fn with_credentials(
        settings: &AdlsSettings,
        credentials: azure_storage::StorageCredentials,
        filesystem: &str,
        directory: &[Segment],
    ) -> Result<AdlsSink, ClientError> {
        let http = client::http_client(settings)?;
        Ok(AdlsSink::build(
            settings,
            credentials,
            http,
            filesystem,
            directory,
        ))
    }

    fn build(
        settings: &AdlsSettings,
        credentials: azure_storage::StorageCredentials,
        http: reqwest::Client,
        filesystem: &str,
        directory: &[Segment],
    ) -> AdlsSink {
        let blob = match &settings.write {
            WriteProtocol::Blob { endpoint } => Some(client::filesystem_client(
                settings,
                endpoint,
                credentials.clone(),
                http.clone(),
                filesystem,
            )),
            WriteProtocol::Dfs => None,
        };
        let client =
            client::filesystem_client(settings, &settings.endpoint, credentials, http, filesystem);
        let mut temp_folder = lake_path::join(directory);
        if !temp_folder.is_empty() {
            temp_folder.push('/');
        }
        temp_folder.push_str(TEMP_FOLDER);
        AdlsSink {
            inner: Arc::new(Inner {
                filesystem: client,
                blob,
                filesystem_name: filesystem.to_owned(),
                settings: settings.clone(),
                temp_folder,
                permits: Semaphore::new(settings.write_concurrency),
                known_folders: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Stages files in `<directory>/<folder>` instead of `_tmp`: the mirror's landing zone
    /// uses `_scratchPad`, the staging folder Fabric reserves and never reads as a table.
    /// Such a sink writes through the DFS endpoint whatever its settings say: OneLake's
    /// landing zone is documented for DFS writes, not Put Blob.
    pub fn with_staging_folder(mut self, folder: &str) -> AdlsSink {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.blob = None;
            if let Some(base) = inner.temp_folder.strip_suffix(TEMP_FOLDER) {
                inner.temp_folder = format!("{base}{folder}");
            }
        }
        self
    }
}

#[async_trait]
impl Sink for AdlsSink {
    /// Writes the files at once (up to the process-wide concurrency), all within one
    /// deadline: the retry budget plus two request timeouts, so that a request always
    /// gets its 503 before the Functions host's 230 s limit, however many files it holds.
    async fn store_all(&self, files: Vec<LakeFile>) -> Vec<Result<Stored, SinkError>> {
        let inner = &self.inner;
        let started = Instant::now();
        let retry_until = started + inner.settings.retry_budget;
        let deadline = retry_until + 2 * inner.settings.request_timeout;
        futures_util::future::join_all(
            files
                .into_iter()
                .map(|file| inner.store(file, retry_until, deadline)),
        )
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
        self.inner.store_spooled(path, spooled).await
    }

    fn describe(&self) -> String {
        format!(
            "ADLS Gen2 account {} filesystem {} at {} ({})",
            self.inner.settings.account,
            self.inner.filesystem_name,
            self.inner.settings.endpoint,
            self.inner.settings.credential.kind()
        )
    }

    /// One request for the filesystem's properties (what a wrong credential, a missing
    /// role or a missing filesystem fails), creating the filesystem when it is missing and
    /// `STORAGE_CREATE_FILESYSTEM` says so. The first probe, at start-up, is what shows a
    /// wrong setting in the logs before the first change event.
    async fn probe(&self) -> Result<(), SinkError> {
        let inner = &self.inner;
        let Err(error) = inner.filesystem.get_properties().await else {
            return inner.probe_blob_endpoint().await;
        };
        let failure = Failure::of("checking filesystem")(error);
        let missing = failure.code() == Some("FilesystemNotFound");
        if missing && inner.settings.create_filesystem && inner.create_filesystem().await {
            return Ok(());
        }
        let retryable = is_transient(&failure.error);
        Err(inner.give_up(&failure, &inner.filesystem_name, retryable))
    }
}

impl Inner {
    /// With the blob protocol, one Get Blob Properties on the Blob endpoint (a name in the
    /// hidden temporary folder, which is never a blob): a 404 shows the endpoint reachable
    /// and the credential accepted there, before the first change event needs it.
    async fn probe_blob_endpoint(&self) -> Result<(), SinkError> {
        let Some(blob) = &self.blob else {
            return Ok(());
        };
        let probe = blob.get_file_client(format!("{}/probe", self.temp_folder));
        let error = match client::blob_length(&probe).await {
            Ok(_) => return Ok(()),
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => error,
        };
        let retryable = is_transient(&error);
        let mut refused = self.give_up(
            &Failure::of("checking the Blob endpoint")(error),
            &self.filesystem_name,
            retryable,
        );
        if let (true, SinkError::Storage { detail, .. }) = (retryable, &mut refused) {
            detail.push_str(
                " (STORAGE_WRITE_PROTOCOL=blob writes there: if only the DFS endpoint is reachable, set STORAGE_WRITE_PROTOCOL=dfs)",
            );
        }
        Err(refused)
    }

    /// Stores one file: retries transient failures until `retry_until`, and gives up at
    /// `deadline` whatever it is doing (waiting for a permit, or an attempt started just
    /// before the retries ended). Giving up mid-attempt is safe: the final path only ever
    /// receives a complete file.
    async fn store(
        &self,
        file: LakeFile,
        retry_until: Instant,
        deadline: Instant,
    ) -> Result<Stored, SinkError> {
        let path = file.path.to_string();
        let retries = self.store_with_retries(file, &path, retry_until);
        match tokio::time::timeout_at(deadline, retries).await {
            Ok(outcome) => outcome,
            Err(_) => Err(past_deadline("storing", path)),
        }
    }

    /// Stores one file with the configured protocol: a Put Blob per attempt (`blob`), or
    /// a temporary file renamed into place (`attempt`).
    async fn store_with_retries(
        &self,
        file: LakeFile,
        path: &str,
        retry_until: Instant,
    ) -> Result<Stored, SinkError> {
        let contents = Bytes::from(file.contents);
        if let Some(blob) = &self.blob {
            let put = blob::PutOnce::new(
                blob.get_file_client(path),
                self.filesystem.get_file_client(path),
                &contents,
            );
            return self.attempts(path, retry_until, || put.attempt()).await;
        }
        let folder = lake_path::join(file.path.parent_segments());
        let name = file.path.file_name().as_str();
        self.attempts(path, retry_until, || {
            self.attempt(path, &folder, name, &contents)
        })
        .await
    }

    /// Runs whole attempts at storing the file at `path` until one succeeds, one fails for
    /// good, or `retry_until` passes; creates a missing filesystem on the way when
    /// `STORAGE_CREATE_FILESYSTEM` says so.
    async fn attempts<F, Fut>(
        &self,
        path: &str,
        retry_until: Instant,
        mut attempt: F,
    ) -> Result<Stored, SinkError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Stored, Failure>>,
    {
        let mut retries = Retries::until(retry_until);
        loop {
            let failure = {
                // Held for one attempt, not across the waits between attempts. The
                // semaphore is never closed, so a permit always comes.
                let _permit = self.permits.acquire().await;
                match attempt().await {
                    Ok(stored) => return Ok(stored),
                    Err(failure) => failure,
                }
            };
            let retry = if matches!(
                failure.code(),
                Some("FilesystemNotFound" | "ContainerNotFound")
            ) && self.settings.create_filesystem
            {
                self.create_filesystem().await
            } else {
                // A temporary file gone before its rename (a cleanup rule, say) is
                // written again by a fresh attempt.
                is_transient(&failure.error) || failure.code() == Some("SourcePathNotFound")
            };
            if !retries.wait(failure.operation, &failure.error, retry).await {
                return Err(self.give_up(&failure, path, retry));
            }
        }
    }

    /// One attempt: make sure the folder exists, write the file complete under a fresh
    /// temporary name, rename it into place. The temporary file is deleted unless it
    /// became the final file.
    async fn attempt(
        &self,
        path: &str,
        folder: &str,
        name: &str,
        contents: &Bytes,
    ) -> Result<Stored, Failure> {
        self.ensure_folder(folder).await?;
        let temp = self.temp_file(name);
        let outcome = match write_complete(&temp, contents).await {
            Ok(()) => {
                self.publish(&temp, path, folder, contents.len() as u64)
                    .await
            }
            Err(failure) => Err(failure),
        };
        if !matches!(outcome, Ok(Published::Renamed)) {
            discard(&temp).await;
        }
        outcome.map(Published::stored)
    }

    /// A fresh temporary file for a file named `name`: `<directory>/_tmp/<name>.<random>`.
    fn temp_file(&self, name: &str) -> FileClient {
        self.filesystem
            .get_file_client(format!("{}/{name}.{}", self.temp_folder, random_suffix()))
    }

    /// Renames the complete temporary file onto `path` unless something is there.
    async fn publish(
        &self,
        temp: &FileClient,
        path: &str,
        folder: &str,
        length: u64,
    ) -> Result<Published, Failure> {
        let mut renamed = temp.rename_if_not_exists(path).await;
        if let Err(error) = &renamed {
            if status_and_code(error) == Some((404, Some("RenameDestinationParentPathNotFound"))) {
                // Someone removed the folder since it was made: make it again, once.
                self.forget_folder(folder);
                self.ensure_folder(folder).await?;
                renamed = temp.rename_if_not_exists(path).await;
            }
        }
        let error = match renamed {
            Ok(()) => return Ok(Published::Renamed),
            Err(error) => error,
        };
        if status_and_code(&error) == Some((409, Some("PathAlreadyExists"))) {
            return Ok(Published::AlreadyThere);
        }
        // Any other failure (a timeout, a reset connection, a 5xx, even an unexpected
        // 4xx): the rename may have happened and only its answer been lost. It did if a
        // file of this length is in place and the temporary name is gone; a file in place
        // with the temporary file still there is another writer's (a claim a rival pass
        // took must not come back `Written`).
        let final_file = self.filesystem.get_file_client(path);
        if let Ok(properties) = final_file.get_properties().await {
            if properties.content_length == i64::try_from(length).ok() {
                match temp.get_properties().await {
                    Err(gone) if is_not_found(&gone) => return Ok(Published::FoundInPlace),
                    Ok(_) => return Ok(Published::AlreadyThere),
                    Err(_) => {}
                }
            }
        }
        Err(Failure::of("renaming into place")(error))
    }

    /// Sends a request until it succeeds, fails for good (not transient) or `retry_until`
    /// passes, holding a write permit for each try (not across the waits) and logging
    /// each retry; otherwise the last failure. For operations whose every request may be
    /// repeated as it stands (listings, reads, deletes, and each step of a spooled upload).
    async fn send_with_retries<T, F, Fut>(
        &self,
        retry_until: Instant,
        mut request: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut retries = Retries::until(retry_until);
        loop {
            let failure = {
                // The semaphore is never closed, so a permit always comes.
                let _permit = self.permits.acquire().await;
                match request().await {
                    Ok(value) => return Ok(value),
                    Err(failure) => failure,
                }
            };
            let retry = is_transient(&failure.error);
            if !retries.wait(failure.operation, &failure.error, retry).await {
                return Err(failure);
            }
        }
    }

    /// Creates `folder` (and its parents) unless it is known to exist.
    async fn ensure_folder(&self, folder: &str) -> Result<(), Failure> {
        if folder.is_empty() || self.lock_folders().contains(folder) {
            return Ok(());
        }
        match self
            .filesystem
            .get_directory_client(folder)
            .create_if_not_exists()
            .await
        {
            Ok(_) => {}
            Err(error) if status_and_code(&error) == Some((409, Some("PathAlreadyExists"))) => {}
            Err(error) => return Err(Failure::of("creating folder")(error)),
        }
        let mut known = self.lock_folders();
        if known.len() >= MAX_KNOWN_FOLDERS {
            known.clear();
        }
        known.insert(folder.to_owned());
        Ok(())
    }

    fn forget_folder(&self, folder: &str) {
        self.lock_folders().remove(folder);
    }

    fn lock_folders(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // The set is only ever inserted into or cleared: a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is still usable.
        self.known_folders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates the filesystem; `true` when it exists now.
    async fn create_filesystem(&self) -> bool {
        match self.filesystem.create().await {
            Ok(_) => {
                tracing::info!(filesystem = %self.filesystem_name, "created the ADLS filesystem (STORAGE_CREATE_FILESYSTEM)");
                true
            }
            Err(error) if status_and_code(&error).map(|(status, _)| status) == Some(409) => true,
            Err(error) => {
                tracing::error!(
                    cause = %self.describe_failure(&Failure::of("creating filesystem")(error)),
                    "cannot create the ADLS filesystem"
                );
                false
            }
        }
    }

    fn describe_failure(&self, failure: &Failure) -> String {
        diagnosis::describe(&failure.error, &self.settings, &self.filesystem_name)
    }

    /// The error for a failure no more attempts will follow; `retryable` when it was
    /// transient and only the budget ended.
    fn give_up(&self, failure: &Failure, path: &str, retryable: bool) -> SinkError {
        SinkError::Storage {
            operation: failure.operation,
            path: path.to_owned(),
            detail: self.describe_failure(failure),
            retryable,
        }
    }
}

/// The error for an operation still unfinished at its deadline (the retry budget plus two
/// request timeouts).
fn past_deadline(operation: &'static str, path: String) -> SinkError {
    SinkError::Storage {
        operation,
        path,
        detail: "gave up at the request deadline (STORAGE_RETRY_BUDGET_SECS plus two STORAGE_REQUEST_TIMEOUT_SECS)".into(),
        retryable: true,
    }
}

/// Creates `file` and writes `contents` into it, committed: complete, but still under its
/// temporary name.
async fn write_complete(file: &FileClient, contents: &Bytes) -> Result<(), Failure> {
    file.create().await.map_err(Failure::of("creating"))?;
    if contents.is_empty() {
        // Created empty is complete; the service refuses an append of no bytes (400
        // InvalidHeaderValue). Compaction's markers and watermarks are empty files.
        return Ok(());
    }
    client::append_and_flush(file, contents)
        .await
        .map_err(Failure::of("writing"))
}

/// How a complete temporary file ended up.
enum Published {
    /// Renamed onto its final path by this attempt.
    Renamed,
    /// The final path was taken: the same event was stored before.
    AlreadyThere,
    /// The rename's answer was lost, but the final file is there, complete.
    FoundInPlace,
}

impl Published {
    fn stored(self) -> Stored {
        match self {
            Published::Renamed | Published::FoundInPlace => Stored::Written,
            Published::AlreadyThere => Stored::AlreadyPresent,
        }
    }
}

/// Deletes a temporary file, best effort (a 404 included: it may never have been
/// created). A leftover lives in the hidden `_tmp` folder, which lake readers skip.
/// Awaited within the attempt, so deletes count against the concurrency limit too.
async fn discard(file: &FileClient) {
    // `delete().await` recurses until the stack overflows in this client version.
    let _ = file.delete().into_stream().next().await;
}

/// 128 random bits in hex: temporary names never collide, across attempts, processes
/// and instances of the Function App.
fn random_suffix() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        // Without an OS random source, time and address still differ per attempt.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ (&bytes as *const _ as u128)).to_le_bytes();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
