//! Listing, reading and deleting published files on ADLS. Each is one request at a time,
//! retried as writes are (same client, budget, backoff, `warn` line per retry, failure
//! diagnosis), holding a write permit per attempt so the connection pool stays bounded.
//!
//! Listing uses List Paths, a page of up to [`LIST_PAGE`] paths per request, and follows
//! the service's continuation token; a failed page is asked for again with the same token,
//! so a retry never restarts the listing. Files are listed recursively, without folders;
//! folders one level at a time (`recursive=false`), without files. The hidden temporary
//! folder (`<directory>/_tmp`) and its files are left out of both.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use super::client::{self, ListPage};
use super::retry::{is_transient, status_and_code};
use super::{past_deadline, Failure, Inner};
use crate::domain::{lake_path, LakePath, Segment};
use crate::sink::{ListPages, Listed, SinkError};

/// Paths per List Paths request: the service's maximum, so the fewest (billed) requests.
const LIST_PAGE: u32 = 5000;

/// The files under `folder`, a page (one or more List Paths requests) at a time.
pub(super) fn list(inner: Arc<Inner>, folder: &[Segment]) -> ListPages {
    let directory = lake_path::join(folder);
    // `None`: the listing is over; `Some(token)`: the next request starts at `token`.
    let start: Option<Option<String>> = Some(None);
    Box::pin(futures_util::stream::try_unfold(start, move |state| {
        let (inner, directory) = (Arc::clone(&inner), directory.clone());
        async move {
            let Some(mut token) = state else {
                return Ok(None);
            };
            // Skips pages that hold only folders and temporary files.
            loop {
                let page = inner.list_page(&directory, true, token.as_deref()).await?;
                let files = inner.published_files(page.paths);
                token = page.continuation;
                match (files.is_empty(), token) {
                    (true, None) => return Ok(None),
                    (true, Some(next)) => token = Some(next),
                    (false, next) => return Ok(Some((files, next.map(Some)))),
                }
            }
        }
    }))
}

impl Inner {
    /// The folders directly under `folder`, every page of them.
    pub(super) async fn folders(&self, folder: &[Segment]) -> Result<Vec<Segment>, SinkError> {
        let directory = lake_path::join(folder);
        let mut folders = Vec::new();
        let mut token = None;
        loop {
            let page = self.list_page(&directory, false, token.as_deref()).await?;
            folders.extend(
                page.paths
                    .into_iter()
                    .filter(|path| path.is_directory && path.name != self.temp_folder)
                    .filter_map(|path| path.name.rsplit('/').next().and_then(Segment::stored)),
            );
            token = page.continuation;
            if token.is_none() {
                return Ok(folders);
            }
        }
    }

    /// One page of List Paths under `directory` (its tree when `recursive`); a missing
    /// folder is an empty last page.
    async fn list_page(
        &self,
        directory: &str,
        recursive: bool,
        token: Option<&str>,
    ) -> Result<ListPage, SinkError> {
        let outcome = self
            .retrying("listing", directory, || {
                client::list_page(&self.filesystem, directory, recursive, LIST_PAGE, token)
            })
            .await;
        match outcome {
            // A folder nobody has written to yet holds no files.
            Err(SinkError::NotFound { .. }) => Ok(ListPage {
                paths: Vec::new(),
                continuation: None,
            }),
            other => other,
        }
    }

    /// The entries of a page that are published files with lake names.
    fn published_files(
        &self,
        paths: Vec<azure_storage_datalake::file_system::Path>,
    ) -> Vec<Listed> {
        paths
            .into_iter()
            .filter(|path| !path.is_directory)
            .filter(|path| {
                !path
                    .name
                    .strip_prefix(self.temp_folder.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            })
            .filter_map(|path| {
                let segments: Option<Vec<Segment>> =
                    path.name.split('/').map(Segment::stored).collect();
                Some(Listed {
                    path: LakePath::new(segments?)?,
                    size: u64::try_from(path.content_length).ok()?,
                })
            })
            .collect()
    }

    pub(super) async fn read(&self, path: &LakePath) -> Result<Bytes, SinkError> {
        let file = self.filesystem.get_file_client(path.to_string());
        self.retrying("reading", &path.to_string(), || client::read_whole(&file))
            .await
    }

    /// Deletes a file; a file already gone (404 `PathNotFound`) counts as deleted, so a
    /// retry after a lost answer succeeds too.
    pub(super) async fn delete(&self, path: &LakePath) -> Result<(), SinkError> {
        let file = self.filesystem.get_file_client(path.to_string());
        let outcome = self
            .retrying("deleting", &path.to_string(), || async {
                // `delete().await` recurses until the stack overflows in this client version.
                match file.delete().into_stream().next().await {
                    Some(Err(error)) => Err(error),
                    _ => Ok(()),
                }
            })
            .await;
        match outcome {
            Err(SinkError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// Runs a single-request operation until it succeeds, fails for good (not transient),
    /// or its retry budget ends, all within one deadline (the budget plus two request
    /// timeouts). A 404 `PathNotFound` is [`SinkError::NotFound`].
    async fn retrying<T, F, Fut>(
        &self,
        operation: &'static str,
        path: &str,
        mut request: F,
    ) -> Result<T, SinkError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = azure_core::Result<T>>,
    {
        let retry_until = Instant::now() + self.settings.retry_budget;
        let deadline = retry_until + 2 * self.settings.request_timeout;
        let attempts = self.send_with_retries(retry_until, || {
            let sent = request();
            async move { sent.await.map_err(Failure::of(operation)) }
        });
        match tokio::time::timeout_at(deadline, attempts).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(failure))
                if status_and_code(&failure.error) == Some((404, Some("PathNotFound"))) =>
            {
                Err(SinkError::NotFound {
                    operation,
                    path: path.to_owned(),
                })
            }
            Ok(Err(failure)) => {
                let retryable = is_transient(&failure.error);
                Err(self.give_up(&failure, path, retryable))
            }
            Err(_) => Err(past_deadline(operation, path.to_owned())),
        }
    }
}
