//! The ADLS Gen2 sink: records land in a filesystem (container) of a storage account
//! through the DFS endpoint.
//!
//! The service makes a created file visible at once, empty, and fills it as data is
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

mod client;
mod retry;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_storage_datalake::clients::{FileClient, FileSystemClient};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Semaphore;

pub use self::client::ClientError;
use self::retry::{is_transient, status_and_code, Backoff};
use super::{LakeFile, Sink, SinkError, Stored};
use crate::configuration::{AdlsSettings, Credential};
use crate::domain::Segment;

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
        let credentials = client::credentials(settings)?;
        AdlsSink::with_credentials(settings, credentials, filesystem, directory)
    }

    /// As [`AdlsSink::new`], with credentials made elsewhere (tests use fixed tokens).
    pub fn with_credentials(
        settings: &AdlsSettings,
        credentials: azure_storage::StorageCredentials,
        filesystem: &str,
        directory: &[Segment],
    ) -> Result<AdlsSink, ClientError> {
        let client = client::filesystem_client(settings, credentials, filesystem)?;
        let temp_folder = directory
            .iter()
            .map(Segment::as_str)
            .chain([TEMP_FOLDER])
            .collect::<Vec<_>>()
            .join("/");
        Ok(AdlsSink {
            inner: Arc::new(Inner {
                filesystem: client,
                filesystem_name: filesystem.to_owned(),
                settings: settings.clone(),
                temp_folder,
                permits: Semaphore::new(settings.write_concurrency),
                known_folders: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Checks once, in the background, that the filesystem is reachable (creating it if
    /// configured to), so a wrong credential or a missing filesystem shows up in the logs
    /// at start-up rather than with the first change event. Start-up does not wait.
    pub fn spawn_start_up_check(&self) {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            match inner.filesystem.get_properties().await {
                Ok(_) => {
                    tracing::info!(filesystem = %inner.filesystem_name, "ADLS filesystem reachable")
                }
                Err(error) => {
                    let failure = Failure::of("checking filesystem")(error);
                    if failure.code() == Some("FilesystemNotFound")
                        && inner.settings.create_filesystem
                    {
                        inner.create_filesystem().await;
                    } else {
                        tracing::error!(cause = %inner.describe_failure(&failure), "ADLS start-up check failed");
                    }
                }
            }
        });
    }
}

#[async_trait]
impl Sink for AdlsSink {
    async fn store_all(&self, files: Vec<LakeFile>) -> Vec<Result<Stored, SinkError>> {
        let inner = &self.inner;
        futures_util::future::join_all(files.into_iter().map(|file| async move {
            // The semaphore is never closed, so a permit always comes.
            let _permit = inner.permits.acquire().await;
            inner.store(file).await
        }))
        .await
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
}

impl Inner {
    /// Stores one file, retrying transient failures within the retry budget. An attempt
    /// started just before the budget ends may still take a request timeout or so; past
    /// that the file is given up on, so a request never outlives the Functions HTTP limit.
    async fn store(&self, file: LakeFile) -> Result<Stored, SinkError> {
        let path = file.path.to_string();
        let limit = self.settings.retry_budget + 2 * self.settings.request_timeout;
        match tokio::time::timeout(limit, self.store_with_retries(file)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(SinkError::Storage {
                operation: "storing",
                path,
                detail: format!(
                    "gave up after {} s (STORAGE_RETRY_BUDGET_SECS plus request timeouts)",
                    limit.as_secs()
                ),
            }),
        }
    }

    async fn store_with_retries(&self, file: LakeFile) -> Result<Stored, SinkError> {
        let path = file.path.to_string();
        let folder = file
            .path
            .parent_segments()
            .iter()
            .map(Segment::as_str)
            .collect::<Vec<_>>()
            .join("/");
        let name = file.path.file_name().as_str();
        let contents = Bytes::from(file.contents);
        let mut backoff = Backoff::new(self.settings.retry_budget);
        loop {
            let failure = match self.attempt(&path, &folder, name, &contents).await {
                Ok(stored) => return Ok(stored),
                Err(failure) => failure,
            };
            let retry = if failure.code() == Some("FilesystemNotFound")
                && self.settings.create_filesystem
            {
                self.create_filesystem().await;
                true
            } else {
                // A temporary file gone before its rename (a cleanup rule, say) is
                // written again by a fresh attempt.
                is_transient(&failure.error) || failure.code() == Some("SourcePathNotFound")
            };
            match backoff.next_delay() {
                Some(delay) if retry => tokio::time::sleep(delay).await,
                _ => {
                    return Err(SinkError::Storage {
                        operation: failure.operation,
                        path,
                        detail: self.describe_failure(&failure),
                    })
                }
            }
        }
    }

    /// One attempt: make sure the folder exists, write the file complete under a fresh
    /// temporary name, rename it into place.
    async fn attempt(
        &self,
        path: &str,
        folder: &str,
        name: &str,
        contents: &Bytes,
    ) -> Result<Stored, Failure> {
        self.ensure_folder(folder).await?;
        let temp = self.filesystem.get_file_client(format!(
            "{}/{name}.{}",
            self.temp_folder,
            random_suffix()
        ));
        if let Err(failure) = write_complete(&temp, contents).await {
            discard(temp);
            return Err(failure);
        }
        self.publish(temp, path, folder, contents.len()).await
    }

    /// Renames the complete temporary file onto `path` unless something is there.
    async fn publish(
        &self,
        temp: FileClient,
        path: &str,
        folder: &str,
        length: usize,
    ) -> Result<Stored, Failure> {
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
            Ok(()) => return Ok(Stored::Written),
            Err(error) => error,
        };
        if status_and_code(&error) == Some((409, Some("PathAlreadyExists"))) {
            discard(temp);
            return Ok(Stored::AlreadyPresent);
        }
        // No clear answer: the rename may have happened and only its answer been lost.
        let final_file = self.filesystem.get_file_client(path);
        if let Ok(properties) = final_file.get_properties().await {
            if properties.content_length == i64::try_from(length).ok() {
                return Ok(Stored::Written);
            }
        }
        discard(temp);
        Err(Failure::of("renaming into place")(error))
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

    async fn create_filesystem(&self) {
        match self.filesystem.create().await {
            Ok(_) => {
                tracing::info!(filesystem = %self.filesystem_name, "created the ADLS filesystem (STORAGE_CREATE_FILESYSTEM)")
            }
            Err(error) if status_and_code(&error).map(|(status, _)| status) == Some(409) => {}
            Err(error) => tracing::error!(
                cause = %self.describe_failure(&Failure::of("creating filesystem")(error)),
                "cannot create the ADLS filesystem"
            ),
        }
    }

    /// What went wrong, with what to do about it when that is known. Built from the
    /// status and error code only: messages and URLs can carry SAS signatures.
    fn describe_failure(&self, failure: &Failure) -> String {
        let Some((status, code)) = status_and_code(&failure.error) else {
            return match failure.error.kind() {
                azure_core::error::ErrorKind::Io => {
                    "no answer from the storage endpoint (connection failed or timed out)".into()
                }
                azure_core::error::ErrorKind::Credential => format!(
                    "could not get a Microsoft Entra ID token: {}",
                    failure.error
                ),
                other => format!("{other}"),
            };
        };
        let code = code.unwrap_or("no error code");
        let hint = match (status, code) {
            (404, "FilesystemNotFound") => format!(
                "filesystem {:?} does not exist in account {}: create it, or set STORAGE_CREATE_FILESYSTEM=true",
                self.filesystem_name, self.settings.account
            ),
            (403, "AuthorizationPermissionMismatch" | "AuthorizationFailure") => {
                match self.settings.credential {
                    Credential::EntraId => "the identity may not write here: give it the \"Storage Blob Data Contributor\" role on the storage account or container".into(),
                    Credential::Sas(_) => "the SAS token lacks permissions: it needs read, add, create, write, delete and list (sp=racwdl) on the blob service".into(),
                    Credential::AccountKey(_) => "the account refuses key access here (network rules or shared key access disabled)".into(),
                }
            }
            (401 | 403, _) => match self.settings.credential {
                Credential::AccountKey(_) => "authentication failed: check storage_account_key (or the connection string's AccountKey) against the account's access keys".into(),
                Credential::Sas(_) => "authentication failed: check STORAGE_SAS_TOKEN (expired, revoked or for another account)".into(),
                Credential::EntraId => "the Microsoft Entra ID token was refused: check the identity's tenant and that it has the \"Storage Blob Data Contributor\" role".into(),
            },
            _ => String::new(),
        };
        if hint.is_empty() {
            format!("HTTP {status} {code}")
        } else {
            format!("HTTP {status} {code}: {hint}")
        }
    }
}

/// Creates `file`, appends `contents` and flushes with close: complete and committed, but
/// still under its temporary name.
async fn write_complete(file: &FileClient, contents: &Bytes) -> Result<(), Failure> {
    file.create().await.map_err(Failure::of("creating"))?;
    file.append(0, contents.clone())
        .await
        .map_err(Failure::of("appending"))?;
    let length = i64::try_from(contents.len()).unwrap_or(i64::MAX);
    file.flush(length)
        .close(true)
        .await
        .map_err(Failure::of("flushing"))?;
    Ok(())
}

/// Deletes a temporary file in the background, best effort: a leftover lives in the
/// hidden `_tmp` folder, which lake readers skip.
fn discard(file: FileClient) {
    tokio::spawn(async move {
        // `delete().await` recurses until the stack overflows in this client version.
        let _ = file.delete().into_stream().next().await;
    });
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
