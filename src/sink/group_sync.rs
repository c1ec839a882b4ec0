//! Group commit for the local lake: one file-system flush serves every writer waiting
//! for one.
//!
//! Making a file durable with `fsync` costs a device cache flush per call, and a batch of
//! 100 files needs 200 of them. Instead, each writer asks for a flush *after* its own
//! writes; if a flush is already running it waits for the next one, which then covers
//! everyone who asked meanwhile. On Linux the flush is `syncfs(2)` on the lake's file
//! system (data and metadata of every file in it).
//!
//! Failures are reported conservatively. `syncfs` reports a write-back error once, to the
//! first flush that sees it, which may be a round that started before a writer asked. So a
//! writer takes a [`Mark`] before it writes anything, and its flush fails if *any* round
//! that completed after the mark failed. (Kernels before 5.8 do not report `syncfs` errors
//! at all; nothing above the kernel can make up for that.)

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

/// The flush itself: `syncfs` in production, a stand-in in tests.
type Flush = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

/// Flushes a file system for many concurrent writers at once.
pub struct GroupSync {
    flush: Flush,
    state: Mutex<State>,
    finished: Condvar,
}

impl std::fmt::Debug for GroupSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupSync").finish_non_exhaustive()
    }
}

/// How many flush rounds had completed when a writer started writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(u64);

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out: a writer's ticket is issued after its writes completed.
    issued: u64,
    /// Every ticket up to this one is covered by a completed round.
    covered: u64,
    flushing: bool,
    rounds_completed: u64,
    /// The number of the last round that failed (0: none), and its error.
    last_failure: Option<(u64, i32)>,
}

impl GroupSync {
    /// Flushes the file system holding `dir` (Linux `syncfs`).
    pub fn for_file_system(dir: &Path) -> io::Result<GroupSync> {
        let handle = File::open(dir)?;
        Ok(GroupSync::with_flush(Box::new(move || {
            flush_file_system(&handle)
        })))
    }

    pub(crate) fn with_flush(flush: Flush) -> GroupSync {
        GroupSync {
            flush,
            state: Mutex::new(State::default()),
            finished: Condvar::new(),
        }
    }

    /// To be taken before writing anything that a later [`flush`](Self::flush) must cover.
    pub fn mark(&self) -> Mark {
        Mark(self.lock().rounds_completed)
    }

    /// Returns once everything written before the call is on stable storage, or an error
    /// if a flush that completed since `mark` failed. Blocks: call it from the blocking pool.
    pub fn flush(&self, mark: Mark) -> io::Result<()> {
        let mut state = self.lock();
        state.issued += 1;
        let ticket = state.issued;
        while state.covered < ticket {
            if state.flushing {
                state = self
                    .finished
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            // Lead a round covering every ticket issued so far.
            state.flushing = true;
            let covers = state.issued;
            drop(state);
            let outcome = (self.flush)();
            state = self.lock();
            state.flushing = false;
            state.rounds_completed += 1;
            state.covered = covers;
            if let Err(error) = outcome {
                let code = error.raw_os_error().unwrap_or(libc::EIO);
                state.last_failure = Some((state.rounds_completed, code));
            }
            self.finished.notify_all();
        }
        match state.last_failure {
            Some((round, code)) if round > mark.0 => Err(io::Error::from_raw_os_error(code)),
            _ => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(target_os = "linux")]
fn flush_file_system(handle: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `syncfs` only reads the descriptor, which `handle` keeps open.
    let result = unsafe { libc::syncfs(handle.as_raw_fd()) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn flush_file_system(_handle: &File) -> io::Result<()> {
    // Never used: off Linux the local lake flushes each file and folder itself.
    Err(io::ErrorKind::Unsupported.into())
}

/// Whether the lake can flush everything written before with one call (else it flushes
/// each file and folder itself).
pub const FLUSHES_WHOLE_FILE_SYSTEM: bool = cfg!(target_os = "linux");

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn concurrent_writers_share_rounds() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let sync = Arc::new(GroupSync::with_flush(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        })));
        let writers: Vec<_> = (0..16)
            .map(|_| {
                let sync = Arc::clone(&sync);
                std::thread::spawn(move || {
                    let mark = sync.mark();
                    sync.flush(mark)
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("thread").expect("flushed");
        }
        let rounds = calls.load(Ordering::SeqCst);
        assert!(
            rounds < 16,
            "16 writers needed {rounds} flushes; they should share"
        );
        assert_eq!(sync.lock().covered, 16, "every ticket is covered");
    }

    #[test]
    fn a_failed_round_after_the_mark_fails_the_writer_even_if_a_later_round_succeeds() {
        let results = Arc::new(Mutex::new(vec![Ok(()), Err(libc::EIO)]));
        let queue = Arc::clone(&results);
        let sync = GroupSync::with_flush(Box::new(move || {
            match queue.lock().map(|mut q| q.pop()).ok().flatten() {
                Some(Err(code)) => Err(io::Error::from_raw_os_error(code)),
                _ => Ok(()),
            }
        }));
        let early = sync.mark();
        // Round 1 fails (another writer's flush), before `early`'s own flush.
        assert!(
            sync.flush(Mark(u64::MAX)).is_ok(),
            "a mark after the failure is unaffected"
        );
        let error = sync
            .flush(early)
            .expect_err("round 1 may have eaten this writer's error");
        assert_eq!(
            error.raw_os_error(),
            Some(libc::EIO),
            "the original error is kept"
        );
        // Writers that start after the failure are not blamed for it.
        let late = sync.mark();
        assert!(sync.flush(late).is_ok());
    }

    #[test]
    fn the_real_flush_works_on_a_real_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sync = GroupSync::for_file_system(dir.path()).expect("open");
        std::fs::write(dir.path().join("f"), b"data").expect("write");
        let mark = sync.mark();
        assert_eq!(sync.flush(mark).is_ok(), FLUSHES_WHOLE_FILE_SYSTEM);
    }
}
