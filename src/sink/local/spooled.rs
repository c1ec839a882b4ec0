//! Storing a file spooled to local disk (compaction's parts, up to several GB) without
//! reading it into memory.
//!
//! On the lake's file system the spooled file itself becomes the lake file: its data is
//! flushed, then it is hard-linked to its final name (no byte copied; `link` never
//! replaces, so a taken name is `AlreadyPresent`), then the name is flushed as the lake's
//! names are. From another file system (`EXDEV`), or one without hard links, it is copied
//! in a stream (`copy_file_range` on Linux: in the kernel, no buffer in the process) into
//! the lake's staging and published like any file.

use std::fs::File;
use std::io;
use std::path::Path;

use super::folder::{links_unsupported, Folder};
use super::{io_error, Inner, Progress};
use crate::domain::LakePath;
use crate::sink::{SinkError, Stored};

impl Inner {
    /// Stores the spooled file at `path` (on the blocking pool).
    pub(super) fn store_spooled(
        &self,
        path: &LakePath,
        spooled: &Path,
    ) -> Result<Stored, SinkError> {
        let mark = self.mark();
        let mut folders = std::collections::HashMap::new();
        let progress = match self.open_folder(path, &mut folders) {
            Ok(folder) => self.link_or_stage(path, spooled, folder),
            Err(error) => return Err(error),
        };
        self.publish_chunk(vec![progress], &folders, mark)
            .pop()
            .unwrap_or_else(|| Err(SinkError::Task("no result".to_owned())))
    }

    /// Links the spooled file into place, or stages a copy of it when it cannot be linked.
    fn link_or_stage(&self, path: &LakePath, spooled: &Path, folder: &Folder) -> Progress {
        let name = path.file_name().as_str();
        let linked =
            File::open(spooled).and_then(|source| self.link(&source, spooled, folder, name));
        match linked {
            Ok(Some(stored)) => {
                return Progress::Named {
                    path: path.clone(),
                    folder: folder.path().to_path_buf(),
                    stored,
                }
            }
            Ok(None) => {}
            Err(source) => return Progress::Done(Err(io_error("linking", path, source))),
        }
        let mut source = match File::open(spooled) {
            Ok(source) => source,
            Err(error) => {
                return Progress::Done(Err(io_error("reading the spooled file for", path, error)))
            }
        };
        // Looks first: finding the name taken only after copying gigabytes would waste them.
        self.stage_in(path.clone(), folder, true, |staged| {
            io::copy(&mut source, staged).map(drop)
        })
    }

    /// Gives the spooled file (`source`, open at `spooled`) the name `name` in `folder`
    /// once its data is durable; `None` when it is on another file system, or this one
    /// has no hard links, and must be copied.
    fn link(
        &self,
        source: &File,
        spooled: &Path,
        folder: &Folder,
        name: &str,
    ) -> io::Result<Option<Stored>> {
        if !sys::same_file_system(source, folder.path())? {
            return Ok(None);
        }
        // A spooled file is often private (mode 0600); the lake's files are readable by
        // all, as staged files are.
        sys::readable_by_all(source)?;
        if self.durability.is_some() {
            // Its own flush, not the lake's shared one: the data was written before any
            // mark this call could take, and `fsync` reports this file's errors for sure.
            source.sync_data()?;
        }
        match std::fs::hard_link(spooled, folder.path().join(name)) {
            Ok(()) => Ok(Some(Stored::Written)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                Ok(Some(Stored::AlreadyPresent))
            }
            // A bind mount of the same file system, or hard links refused: copy.
            Err(error)
                if error.raw_os_error() == Some(libc::EXDEV) || links_unsupported(&error) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(unix)]
mod sys {
    use std::fs::{File, Permissions};
    use std::io;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    pub(super) fn same_file_system(file: &File, dir: &Path) -> io::Result<bool> {
        Ok(file.metadata()?.dev() == std::fs::metadata(dir)?.dev())
    }

    /// The mode of the lake's staged files (`0644` before the umask).
    pub(super) fn readable_by_all(file: &File) -> io::Result<()> {
        file.set_permissions(Permissions::from_mode(0o644))
    }
}

#[cfg(not(unix))]
mod sys {
    use std::fs::File;
    use std::io;
    use std::path::Path;

    /// Without a device number to compare, every spooled file is copied.
    pub(super) fn same_file_system(_file: &File, _dir: &Path) -> io::Result<bool> {
        Ok(false)
    }

    pub(super) fn readable_by_all(_file: &File) -> io::Result<()> {
        Ok(())
    }
}
