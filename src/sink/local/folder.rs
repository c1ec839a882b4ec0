//! One folder of the local lake, and the file operations inside it.
//!
//! On Linux a folder is opened once and files are looked up, created and named relative
//! to it (`fstatat`, `openat(O_TMPFILE)`, `linkat`): one path walk per folder instead of
//! several per file, which was a third of the handler's CPU in batches. Elsewhere the same
//! operations use full paths and a named temporary file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sink::Stored;

/// A file written complete but not yet visible under its final name.
pub(super) enum Staged {
    /// Linux `O_TMPFILE`: an open file with no name yet; it vanishes if dropped.
    Unnamed(File),
    /// A temporary name in `<container>/_tmp/`.
    Named(PathBuf),
}

/// Unique temporary names for file systems without `O_TMPFILE`.
#[derive(Debug)]
pub(super) struct TempNames {
    dir: PathBuf,
    next: AtomicU64,
}

impl TempNames {
    pub(super) fn new(dir: PathBuf) -> TempNames {
        TempNames {
            dir,
            next: AtomicU64::new(0),
        }
    }

    fn next(&self) -> PathBuf {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!("{}-{serial}.tmp", std::process::id()))
    }
}

/// An existing folder of the lake.
pub(super) struct Folder {
    path: PathBuf,
    /// The open folder, for operations relative to it (Linux).
    handle: Option<File>,
}

impl Folder {
    /// Creates the folder (and its parents) if needed, and opens it.
    pub(super) fn open(path: PathBuf) -> io::Result<Folder> {
        fs::create_dir_all(&path)?;
        let handle = sys::open_dir(&path)?;
        Ok(Folder { path, handle })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `name` exists here (as anything: a file that is there is never replaced).
    pub(super) fn contains(&self, name: &str) -> io::Result<bool> {
        match &self.handle {
            Some(dir) => sys::exists_at(dir, name),
            None => match fs::symlink_metadata(self.path.join(name)) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            },
        }
    }

    /// Writes `contents` complete, without a visible name. `flush` makes the file's own
    /// data durable now (platforms where the lake cannot flush everything at once).
    pub(super) fn stage(
        &self,
        contents: &[u8],
        temp: &TempNames,
        flush: bool,
    ) -> io::Result<Staged> {
        let unnamed = match &self.handle {
            Some(dir) => sys::unnamed_file_at(dir),
            None => None,
        };
        let (mut file, staged_name) = match unnamed {
            Some(file) => (file, None),
            None => {
                let name = temp.next();
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&name)?;
                (file, Some(name))
            }
        };
        let written =
            file.write_all(contents)
                .and_then(|()| if flush { file.sync_data() } else { Ok(()) });
        match (written, staged_name) {
            (Ok(()), None) => Ok(Staged::Unnamed(file)),
            (Ok(()), Some(name)) => Ok(Staged::Named(name)),
            (Err(error), staged_name) => {
                if let Some(name) = staged_name {
                    let _ = fs::remove_file(name);
                }
                Err(error)
            }
        }
    }

    /// Gives a staged file the name `name` here, never replacing an existing file.
    pub(super) fn publish(&self, staged: Staged, name: &str) -> io::Result<Stored> {
        let target = self.path.join(name);
        let linked = match (&staged, &self.handle) {
            (Staged::Unnamed(file), Some(dir)) => sys::link_unnamed_at(file, dir, name),
            (Staged::Unnamed(_), None) => Err(io::ErrorKind::Unsupported.into()),
            (Staged::Named(temp), _) => fs::hard_link(temp, &target),
        };
        let outcome = match linked {
            Ok(()) => Ok(Stored::Written),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Stored::AlreadyPresent),
            // File systems without hard links: a rename is atomic too, and replacing an
            // identical file (same event, same bytes) is harmless.
            Err(e) if links_unsupported(&e) => match &staged {
                Staged::Named(temp) => fs::rename(temp, &target).map(|()| Stored::Written),
                Staged::Unnamed(_) => Err(e),
            },
            Err(e) => Err(e),
        };
        discard(staged);
        outcome
    }

    /// Flushes the folder's entries (new names) to disk.
    pub(super) fn sync(&self) -> io::Result<()> {
        match &self.handle {
            Some(dir) => dir.sync_all(),
            None => sys::sync_dir(&self.path),
        }
    }
}

/// Drops a staged file: an unnamed one vanishes on close, a named one is removed.
pub(super) fn discard(staged: Staged) {
    if let Staged::Named(temp) = staged {
        // Already gone after a rename.
        let _ = fs::remove_file(temp);
    }
}

fn links_unsupported(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
    ) || error.raw_os_error() == Some(95) // EOPNOTSUPP on Linux file systems without links
}

#[cfg(target_os = "linux")]
mod sys {
    use std::ffi::CString;
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Whether `linkat(AT_EMPTY_PATH)` works for this process (kernels before 6.10 want
    /// `CAP_DAC_READ_SEARCH`); learnt on first use.
    pub(super) static EMPTY_PATH_LINKS: AtomicBool = AtomicBool::new(true);

    fn c_name(name: &str) -> io::Result<CString> {
        CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    }

    fn check(result: libc::c_int) -> io::Result<()> {
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    pub(super) fn open_dir(path: &Path) -> io::Result<Option<File>> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
            .map(Some)
    }

    pub(super) fn exists_at(dir: &File, name: &str) -> io::Result<bool> {
        let name = c_name(name)?;
        // SAFETY: `stat` is plain data that fstatat fills in; both pointers are valid
        // for the duration of the call.
        let result = unsafe {
            let mut stat: libc::stat = std::mem::zeroed();
            libc::fstatat(
                dir.as_raw_fd(),
                name.as_ptr(),
                &mut stat,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        match check(result) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// An unnamed file in `dir`, or `None` where the file system cannot make one.
    pub(super) fn unnamed_file_at(dir: &File) -> Option<File> {
        // SAFETY: a valid descriptor and a NUL-terminated path; on success we own the
        // returned descriptor.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c".".as_ptr(),
                libc::O_TMPFILE | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        };
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        (fd >= 0).then(|| unsafe { File::from_raw_fd(fd) })
    }

    /// Names an `O_TMPFILE` file `name` in `dir`; fails with `AlreadyExists` if taken.
    pub(super) fn link_unnamed_at(file: &File, dir: &File, name: &str) -> io::Result<()> {
        let name = c_name(name)?;
        if EMPTY_PATH_LINKS.load(Ordering::Relaxed) {
            // SAFETY: valid descriptors and NUL-terminated strings for the call.
            let result = unsafe {
                libc::linkat(
                    file.as_raw_fd(),
                    c"".as_ptr(),
                    dir.as_raw_fd(),
                    name.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            };
            match check(result) {
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::EPERM | libc::EINVAL)
                    ) =>
                {
                    EMPTY_PATH_LINKS.store(false, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        // The documented unprivileged way: link the descriptor's /proc entry.
        let source = c_name(&format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        // SAFETY: valid descriptors and NUL-terminated strings for the call.
        check(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                source.as_ptr(),
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        })
    }

    pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::fs::File;
    use std::io;
    use std::path::Path;

    pub(super) fn open_dir(_path: &Path) -> io::Result<Option<File>> {
        Ok(None)
    }

    pub(super) fn exists_at(_dir: &File, _name: &str) -> io::Result<bool> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(super) fn unnamed_file_at(_dir: &File) -> Option<File> {
        None
    }

    pub(super) fn link_unnamed_at(_file: &File, _dir: &File, _name: &str) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }

    #[cfg(unix)]
    pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    #[cfg(not(unix))]
    pub(super) fn sync_dir(_dir: &Path) -> io::Result<()> {
        // Windows has no directory handles to flush; NTFS journals the link itself.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_files_are_published_by_either_kind_of_link() {
        let dir = tempfile::tempdir().expect("temp dir");
        let folder = Folder::open(dir.path().join("f")).expect("folder");
        let temp = TempNames::new(dir.path().to_path_buf());
        let publish = |name: &str, contents: &[u8]| {
            let staged = folder.stage(contents, &temp, false).expect("staged");
            folder.publish(staged, name).expect("published")
        };
        assert_eq!(publish("a.json", b"a"), Stored::Written);
        #[cfg(target_os = "linux")]
        {
            // As on kernels where AT_EMPTY_PATH needs a capability: the /proc way.
            sys::EMPTY_PATH_LINKS.store(false, std::sync::atomic::Ordering::Relaxed);
            assert_eq!(publish("b.json", b"b"), Stored::Written);
            assert_eq!(publish("b.json", b"other"), Stored::AlreadyPresent);
        }
        assert_eq!(fs::read(dir.path().join("f/a.json")).expect("a"), b"a");
        let names = fs::read_dir(dir.path().join("f")).expect("dir").count();
        assert_eq!(names, if cfg!(target_os = "linux") { 2 } else { 1 });
    }
}
