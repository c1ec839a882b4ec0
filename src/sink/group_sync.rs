//! Group commit for the local lake: one file-system flush serves every writer waiting
//! for one.
//!
//! Making a file durable with `fsync` costs a device cache flush per call (about 0.4 ms on
//! this project's CI disks, more on laptops), and a batch of 100 files needs 200 of them.
//! Instead, each writer asks for a flush *after* its own writes; if a flush is already
//! running it waits for the next one, which then covers everyone who asked meanwhile.
//! On Linux the flush is `syncfs(2)` on the lake's file system (data and metadata of
//! every file in it); elsewhere it falls back to flushing each file and folder itself.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Results of recent flush rounds, kept so a waiter learns the outcome of the round that
/// covered it even if later rounds finished before it woke up.
const REMEMBERED_ROUNDS: usize = 64;

/// Flushes a file system for many concurrent writers at once.
#[derive(Debug)]
pub struct GroupSync {
    /// An open handle inside the lake, naming the file system to flush.
    handle: File,
    state: Mutex<State>,
    finished: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out: a writer's ticket is issued after its writes completed.
    issued: u64,
    flushing: bool,
    /// Highest ticket covered by each recent round, with the round's outcome.
    rounds: VecDeque<(u64, Result<(), io::ErrorKind>)>,
}

impl GroupSync {
    /// `dir` is any directory on the file system to flush.
    pub fn new(dir: &Path) -> io::Result<GroupSync> {
        Ok(GroupSync {
            handle: File::open(dir)?,
            state: Mutex::new(State::default()),
            finished: Condvar::new(),
        })
    }

    /// Returns once everything written before the call is on stable storage.
    /// Blocks the calling thread: call it from the blocking pool.
    pub fn flush(&self) -> io::Result<()> {
        let mut state = self.lock();
        state.issued += 1;
        let ticket = state.issued;
        loop {
            if let Some(outcome) = state.outcome_for(ticket) {
                return outcome.map_err(io::Error::from);
            }
            if !state.flushing {
                // Lead a round covering every ticket issued so far.
                state.flushing = true;
                let covers = state.issued;
                drop(state);
                let outcome = flush_file_system(&self.handle).map_err(|e| e.kind());
                state = self.lock();
                state.flushing = false;
                state.rounds.push_back((covers, outcome));
                if state.rounds.len() > REMEMBERED_ROUNDS {
                    state.rounds.pop_front();
                }
                self.finished.notify_all();
                continue;
            }
            state = self
                .finished
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// The outcome of the first round that covered `ticket`, once there is one. A round
    /// forgotten since counts as failed: the writer answers "retry" rather than guess.
    fn outcome_for(&self, ticket: u64) -> Option<Result<(), io::ErrorKind>> {
        let newest = self.rounds.back()?.0;
        if newest < ticket {
            return None;
        }
        Some(
            self.rounds
                .iter()
                .find(|(covers, _)| *covers >= ticket)
                .map(|(_, outcome)| *outcome)
                .unwrap_or(Err(io::ErrorKind::Other)),
        )
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
    // Without syncfs the local lake flushes each file and folder itself (see local.rs).
    Ok(())
}

/// Whether [`GroupSync::flush`] makes every earlier write durable by itself.
pub const FLUSHES_WHOLE_FILE_SYSTEM: bool = cfg!(target_os = "linux");

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn concurrent_writers_share_rounds_and_all_succeed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sync = Arc::new(GroupSync::new(dir.path()).expect("open"));
        let writers: Vec<_> = (0..32)
            .map(|n| {
                let sync = Arc::clone(&sync);
                let path = dir.path().join(format!("f{n}"));
                std::thread::spawn(move || {
                    std::fs::write(path, b"data").and_then(|()| sync.flush())
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("thread").expect("flushed");
        }
        let state = sync.lock();
        assert_eq!(state.issued, 32);
        assert!(!state.rounds.is_empty() && state.rounds.len() <= 32);
        assert!(state.rounds.iter().all(|(_, outcome)| outcome.is_ok()));
        assert_eq!(
            state.rounds.back().map(|r| r.0),
            Some(32),
            "the last round covers everyone"
        );
    }

    #[test]
    fn a_waiter_gets_the_outcome_of_the_round_that_covered_it() {
        let mut state = State::default();
        state.rounds.push_back((3, Err(io::ErrorKind::Other)));
        state.rounds.push_back((5, Ok(())));
        assert_eq!(state.outcome_for(2), Some(Err(io::ErrorKind::Other)));
        assert_eq!(state.outcome_for(4), Some(Ok(())));
        assert_eq!(state.outcome_for(6), None, "not covered yet");
    }
}
