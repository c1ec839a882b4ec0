//! Listing, reading and deleting objects: what compaction and the mirror need from a
//! store, each request retried on its own (all of them may be repeated as they stand).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStore;

use super::failure::Failure;
use super::{give_up, Inner, TEMP_FOLDER};
use crate::domain::{LakePath, Segment};
use crate::sink::{ListPages, Listed, SinkError};

/// Keys one listing page holds: one `ListObjectsV2` answer.
const PAGE: usize = 1000;

/// The objects under `folder`, a page at a time. Each page resumes after the last key of
/// the one before (`start-after`), so a failed page is retried alone.
pub(super) fn list(inner: Arc<Inner>, folder: &[Segment]) -> ListPages {
    let prefix = inner.key(folder);
    let start = Some((inner, prefix, None::<Path>));
    futures_util::stream::unfold(start, |state| async move {
        let (inner, prefix, offset) = state?;
        let retry_until = inner.retry_until();
        let page = inner
            .send_with_retries(retry_until, || inner.list_page(&prefix, offset.as_ref()))
            .await;
        match page {
            Ok(objects) if objects.is_empty() => None,
            Ok(objects) => {
                let last = objects.last().map(|meta| meta.location.clone());
                let more = objects.len() == PAGE;
                let listed = inner.published(objects);
                let next = more.then_some((inner, prefix, last));
                Some((Ok(listed), next))
            }
            Err(failure) => Some((Err(give_up(&failure, prefix.as_ref())), None)),
        }
    })
    // A page of only hidden objects is skipped: pages are never empty.
    .filter(|page| std::future::ready(!matches!(page, Ok(listed) if listed.is_empty())))
    .boxed()
}

impl Inner {
    async fn list_page(
        &self,
        prefix: &Path,
        offset: Option<&Path>,
    ) -> Result<Vec<object_store::ObjectMeta>, Failure> {
        let stream = match offset {
            Some(offset) => self.store.list_with_offset(Some(prefix), offset),
            None => self.store.list(Some(prefix)),
        };
        stream
            .take(PAGE)
            .try_collect()
            .await
            .map_err(Failure::of("listing"))
    }

    /// The listed objects that are lake files: below the prefix, outside the hidden
    /// temporary folder, with names the lake could have written.
    fn published(&self, objects: Vec<object_store::ObjectMeta>) -> Vec<Listed> {
        objects
            .into_iter()
            .filter_map(|meta| {
                let parts: Vec<String> = meta
                    .location
                    .parts()
                    .skip(self.prefix.len())
                    .map(|part| part.as_ref().to_owned())
                    .collect();
                if parts.first().map(String::as_str) == Some(TEMP_FOLDER) {
                    return None;
                }
                let segments: Option<Vec<Segment>> =
                    parts.iter().map(|part| Segment::stored(part)).collect();
                Some(Listed {
                    path: LakePath::new(segments?)?,
                    size: meta.size,
                })
            })
            .collect()
    }

    pub(super) async fn read(&self, path: &LakePath) -> Result<Bytes, SinkError> {
        let key = self.key(path.segments());
        let read = self
            .send_with_retries(self.retry_until(), || async {
                let got = self.store.get(&key).await.map_err(Failure::of("reading"))?;
                got.bytes().await.map_err(Failure::of("reading"))
            })
            .await;
        match read {
            Ok(bytes) => Ok(bytes),
            Err(Failure {
                error: object_store::Error::NotFound { .. },
                operation,
            }) => Err(SinkError::NotFound {
                operation,
                path: path.to_string(),
            }),
            Err(failure) => Err(give_up(&failure, &path.to_string())),
        }
    }

    /// S3 answers 204 to deleting a missing key: idempotent as the trait wants.
    pub(super) async fn delete(&self, path: &LakePath) -> Result<(), SinkError> {
        let key = self.key(path.segments());
        match self
            .send_with_retries(self.retry_until(), || async {
                self.store
                    .delete(&key)
                    .await
                    .map_err(Failure::of("deleting"))
            })
            .await
        {
            Ok(()) => Ok(()),
            Err(Failure {
                error: object_store::Error::NotFound { .. },
                ..
            }) => Ok(()),
            Err(failure) => Err(give_up(&failure, &path.to_string())),
        }
    }

    pub(super) async fn folders(&self, folder: &[Segment]) -> Result<Vec<Segment>, SinkError> {
        let prefix = self.key(folder);
        let listed = self
            .send_with_retries(self.retry_until(), || async {
                self.store
                    .list_with_delimiter(Some(&prefix))
                    .await
                    .map_err(Failure::of("listing folders"))
            })
            .await
            .map_err(|failure| give_up(&failure, prefix.as_ref()))?;
        let at_root = folder.is_empty();
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|path| path.filename())
            .filter(|name| !(at_root && *name == TEMP_FOLDER))
            .filter_map(Segment::stored)
            .collect())
    }
}
