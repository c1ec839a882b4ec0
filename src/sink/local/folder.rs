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

/// Initial buffer for a file read whole: change files are a few KB.
const READ_GUESS: usize = 8 << 10;

/// A file written complete but not yet visible under its final name.
pub(super) enum Staged {
    /// Linux `O_TMPFILE`: an open file with no name yet; it vanishes if dropped.
    Unnamed(File),
    /// A temporary name in `<container>/.tmp/`.
    Named(PathBuf),
}

/// How files are staged, decided once per lake by [`probe_staging`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Staging {
    /// `O_TMPFILE` files, named with `linkat` (Linux file systems that support it).
    Unnamed,
    /// Named temporary files in the lake's temporary folder.
    Named,
}

/// Unique temporary names for [`Staging::Named`]: unique across processes sharing a lake
/// and across restarts (a reused PID does not meet its predecessor's leftovers).
#[derive(Debug)]
pub(super) struct TempNames {
    dir: PathBuf,
    /// Random per process.
    instance: u64,
    next: AtomicU64,
}

impl TempNames {
    pub(super) fn new(dir: PathBuf) -> TempNames {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS's randomness: no extra dependency for 64 bits.
        let instance = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        TempNames {
            dir,
            instance,
            next: AtomicU64::new(0),
        }
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn next(&self) -> PathBuf {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!(
            "{}-{:016x}-{serial}.tmp",
            std::process::id(),
            self.instance
        ))
    }
}

/// Finds out once whether unnamed files can be created *and* named in the lake: both
/// must work, or every write would fail at the last step.
pub(super) fn probe_staging(temp: &TempNames) -> Staging {
    let Ok(folder) = Folder::open(temp.dir().to_path_buf()) else {
        return Staging::Named;
    };
    if folder.handle.is_none() {
        return Staging::Named;
    }
    let name = temp.next();
    let Some(name) = name.file_name().and_then(|n| n.to_str()) else {
        return Staging::Named;
    };
    let works = folder
        .stage(b"probe", temp, Staging::Unnamed, false)
        .and_then(|staged| folder.publish(staged, name))
        .is_ok_and(|stored| stored == Stored::Written);
    let _ = fs::remove_file(temp.dir().join(name));
    if works {
        Staging::Unnamed
    } else {
        Staging::Named
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

    /// Opens a folder that should exist (reading; nothing is created).
    pub(super) fn open_existing(path: PathBuf) -> io::Result<Folder> {
        let handle = sys::open_dir(&path)?;
        Ok(Folder { path, handle })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The whole contents of the file `name` here. Opened relative to the folder and
    /// without updating its access time (Linux): a pass reads a million files, and both
    /// the path walk and the atime write were a fifth of its time.
    pub(super) fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut file = match &self.handle {
            Some(dir) => sys::open_read_at(dir, name)?,
            None => File::open(self.path.join(name))?,
        };
        // Not `read_to_end`: for a `File` it asks the size first (a `statx` per file).
        let mut contents = vec![0; READ_GUESS];
        let mut filled = 0;
        loop {
            if filled == contents.len() {
                contents.resize(contents.len() * 2, 0);
            }
            match file.read(&mut contents[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        contents.truncate(filled);
        // Callers keep what they read (a sort buffer of a million records): no slack.
        contents.shrink_to_fit();
        Ok(contents)
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
        staging: Staging,
        flush: bool,
    ) -> io::Result<Staged> {
        self.stage_with(temp, staging, flush, |file| file.write_all(contents))
    }

    /// As [`Folder::stage`], with the contents written by `write` (a streaming copy of a
    /// large file, say).
    pub(super) fn stage_with(
        &self,
        temp: &TempNames,
        staging: Staging,
        flush: bool,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> io::Result<Staged> {
        let (mut file, staged_name) = match (staging, &self.handle) {
            (Staging::Unnamed, Some(dir)) => (sys::unnamed_file_at(dir)?, None),
            _ => {
                let name = temp.next();
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&name)?;
                (file, Some(name))
            }
        };
        let written = write(&mut file).and_then(|()| if flush { file.sync_data() } else { Ok(()) });
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

pub(super) fn links_unsupported(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
    ) || error.raw_os_error() == Some(libc::EOPNOTSUPP)
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
    static EMPTY_PATH_LINKS: AtomicBool = AtomicBool::new(true);

    pub(super) fn c_name(name: &str) -> io::Result<CString> {
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

    /// Opens `name` in `dir` for reading, without updating its access time when the
    /// process may ask that (`O_NOATIME` needs the file's owner; else an ordinary open).
    pub(super) fn open_read_at(dir: &File, name: &str) -> io::Result<File> {
        let name = c_name(name)?;
        let open = |flags: libc::c_int| {
            // SAFETY: a valid descriptor and a NUL-terminated name; on success we own
            // the returned descriptor.
            let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                // SAFETY: `fd` is a fresh descriptor nobody else owns.
                Ok(unsafe { File::from_raw_fd(fd) })
            }
        };
        let flags = libc::O_RDONLY | libc::O_CLOEXEC;
        match open(flags | libc::O_NOATIME) {
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => open(flags),
            other => other,
        }
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

    /// An unnamed file in `dir` (`O_TMPFILE`).
    pub(super) fn unnamed_file_at(dir: &File) -> io::Result<File> {
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
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Names an `O_TMPFILE` file `name` in `dir`; fails with `AlreadyExists` if taken.
    pub(super) fn link_unnamed_at(file: &File, dir: &File, name: &str) -> io::Result<()> {
        let name = c_name(name)?;
        if EMPTY_PATH_LINKS.load(Ordering::Relaxed) {
            match link_by_descriptor(file, dir, &name) {
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
        link_through_proc(file, dir, &name)
    }

    /// `linkat(AT_EMPTY_PATH)`: kernels before 6.10 want `CAP_DAC_READ_SEARCH` for it.
    fn link_by_descriptor(file: &File, dir: &File, name: &CString) -> io::Result<()> {
        // SAFETY: valid descriptors and NUL-terminated strings for the call.
        check(unsafe {
            libc::linkat(
                file.as_raw_fd(),
                c"".as_ptr(),
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        })
    }

    /// The documented unprivileged way: link the descriptor's /proc entry.
    pub(super) fn link_through_proc(file: &File, dir: &File, name: &CString) -> io::Result<()> {
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

    pub(super) fn open_read_at(_dir: &File, _name: &str) -> io::Result<File> {
        unreachable!("no folder handles off Linux")
    }

    pub(super) fn exists_at(_dir: &File, _name: &str) -> io::Result<bool> {
        Err(io::ErrorKind::Unsupported.into())
    }

    pub(super) fn unnamed_file_at(_dir: &File) -> io::Result<File> {
        Err(io::ErrorKind::Unsupported.into())
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

    fn stage_and_publish(
        folder: &Folder,
        temp: &TempNames,
        staging: Staging,
        name: &str,
    ) -> Stored {
        let staged = folder
            .stage(name.as_bytes(), temp, staging, false)
            .expect("staged");
        folder.publish(staged, name).expect("published")
    }

    #[test]
    fn both_stagings_publish_once_and_never_replace() {
        let dir = tempfile::tempdir().expect("temp dir");
        let folder = Folder::open(dir.path().join("f")).expect("folder");
        let temp = TempNames::new(dir.path().join(".tmp"));
        fs::create_dir_all(temp.dir()).expect("temp dir");
        let staging = probe_staging(&temp);
        assert_eq!(staging == Staging::Unnamed, cfg!(target_os = "linux"));
        for staging in [staging, Staging::Named] {
            let name = format!("{staging:?}.json");
            assert_eq!(
                stage_and_publish(&folder, &temp, staging, &name),
                Stored::Written
            );
            let again = folder
                .stage(b"other", &temp, staging, false)
                .expect("staged");
            assert_eq!(
                folder.publish(again, &name).ok(),
                Some(Stored::AlreadyPresent)
            );
            assert_eq!(
                fs::read(folder.path().join(&name)).expect("file"),
                name.as_bytes()
            );
            assert!(folder.contains(&name).expect("lookup"));
        }
        assert!(!folder.contains("missing.json").expect("lookup"));
        let leftovers = fs::read_dir(temp.dir()).expect("temp").count();
        assert_eq!(
            leftovers, 0,
            "no temporary file survives, the probe's included"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn unnamed_files_can_be_named_through_proc() {
        // The way used where AT_EMPTY_PATH needs a capability the process lacks.
        let dir = tempfile::tempdir().expect("temp dir");
        let folder = Folder::open(dir.path().to_path_buf()).expect("folder");
        let handle = folder.handle.as_ref().expect("open folder");
        let mut file = sys::unnamed_file_at(handle).expect("O_TMPFILE");
        file.write_all(b"via proc").expect("write");
        let name = sys::c_name("p.json").expect("name");
        sys::link_through_proc(&file, handle, &name).expect("linked");
        assert_eq!(
            fs::read(dir.path().join("p.json")).expect("file"),
            b"via proc"
        );
        let again = sys::link_through_proc(&file, handle, &name).expect_err("taken");
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    }
}
