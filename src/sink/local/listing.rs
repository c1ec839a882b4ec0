//! Listing the local lake: a depth-first walk of the folder tree, a page at a time.
//!
//! The walk holds one open directory per level of depth, never the names of a whole
//! folder, so a folder of a million change files costs one page of entries in memory.
//! Names that are not lake segments are skipped: the temporary folder (`.tmp`, which
//! starts with a dot, as no segment can) and anything the service did not write.

use std::fs::{self, ReadDir};
use std::io;
use std::path::{Path, PathBuf};

use crate::domain::{lake_path, LakePath, Segment};
use crate::sink::{ListPages, Listed, SinkError};

/// Files per page: one blocking-pool task each, a few hundred KB of entries.
const PAGE: usize = 1000;

/// The files under `folder`, each page read by a blocking-pool task.
pub(super) fn pages(container_root: PathBuf, folder: Vec<Segment>) -> ListPages {
    let state = Listing {
        container_root,
        folder,
        walk: None,
    };
    Box::pin(futures_util::stream::try_unfold(
        state,
        |mut listing| async move {
            // The walk moves into the task and comes back with the page.
            let walk = listing.walk.take();
            let (root, folder) = (listing.container_root.clone(), listing.folder.clone());
            let outcome = tokio::task::spawn_blocking(move || {
                let mut walk = match walk {
                    Some(walk) => walk,
                    None => Walk::start(&root, &folder)?,
                };
                walk.next_page(PAGE).map(|page| (page, walk))
            })
            .await;
            match outcome {
                Err(error) => Err(SinkError::Task(error.to_string())),
                Ok(Err(source)) => Err(SinkError::Io {
                    operation: "listing",
                    path: lake_path::join(&listing.folder),
                    source,
                }),
                Ok(Ok((page, _))) if page.is_empty() => Ok(None),
                Ok(Ok((page, walk))) => {
                    listing.walk = Some(walk);
                    Ok(Some((page, listing)))
                }
            }
        },
    ))
}

/// A listing between pages.
struct Listing {
    container_root: PathBuf,
    folder: Vec<Segment>,
    walk: Option<Walk>,
}

/// Where a listing stands: the open directories from the listed folder down to the one
/// being read, each with its path in the lake.
struct Walk {
    stack: Vec<(Vec<Segment>, ReadDir)>,
}

impl Walk {
    /// Opens `folder` below `container_root`; a missing folder gives an empty walk.
    fn start(container_root: &Path, folder: &[Segment]) -> io::Result<Walk> {
        let mut dir = container_root.to_path_buf();
        dir.extend(folder.iter().map(Segment::as_str));
        let stack = match open(&dir)? {
            Some(entries) => vec![(folder.to_vec(), entries)],
            None => Vec::new(),
        };
        Ok(Walk { stack })
    }

    /// Up to `max` more files; empty once the walk is over.
    fn next_page(&mut self, max: usize) -> io::Result<Vec<Listed>> {
        let mut page = Vec::new();
        while page.len() < max {
            let Some((folder, entries)) = self.stack.last_mut() else {
                break;
            };
            let Some(entry) = entries.next() else {
                self.stack.pop();
                continue;
            };
            let entry = entry?;
            let Some(segment) = entry.file_name().to_str().and_then(Segment::stored) else {
                continue;
            };
            let mut segments = folder.clone();
            segments.push(segment);
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if let Some(entries) = open(&entry.path())? {
                    self.stack.push((segments, entries));
                }
            } else if kind.is_file() {
                // A file deleted since the folder was read is simply not listed.
                let size = match entry.metadata() {
                    Ok(metadata) => metadata.len(),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(error),
                };
                if let Some(path) = LakePath::new(segments) {
                    page.push(Listed { path, size });
                }
            }
        }
        Ok(page)
    }
}

/// Opens a folder for reading; `None` when it is not there (or was removed meanwhile) or
/// is a file, as List Paths on ADLS answers 404 for both.
fn open(dir: &Path) -> io::Result<Option<ReadDir>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries)),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The lake folders directly under `dir` (none when it is missing or a file). Names no
/// segment could produce are left out, the temporary folder (`.tmp`) among them.
pub(super) fn child_folders(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut folders = Vec::new();
    for entry in open(dir)?.into_iter().flatten() {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        if let Some(segment) = entry.file_name().to_str().and_then(Segment::stored) {
            folders.push(segment);
        }
    }
    Ok(folders)
}
