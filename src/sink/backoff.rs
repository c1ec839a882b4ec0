//! How long to wait between attempts at a storage request: exponential backoff with full
//! jitter, bounded by a deadline. Store-neutral, for every network sink.

use std::time::Duration;

use tokio::time::Instant;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// The slowest upload, in bytes per second, that still counts as working, for the deadline.
const SLOWEST_UPLOAD: u64 = 4 * 1024 * 1024;

/// Exponential backoff with full jitter, bounded by a deadline.
#[derive(Debug)]
pub(super) struct Backoff {
    deadline: Instant,
    ceiling: Duration,
}

impl Backoff {
    /// Retries end at `deadline`.
    pub(super) fn until(deadline: Instant) -> Backoff {
        Backoff {
            deadline,
            ceiling: FIRST_DELAY,
        }
    }

    /// How long to wait before the next attempt, or `None` when the budget would be
    /// exceeded. Jitter spreads the retries of many writers hit by the same outage.
    pub(super) fn next_delay(&mut self) -> Option<Duration> {
        let delay = self.ceiling.mul_f64(0.5 + 0.5 * random_fraction());
        self.ceiling = (self.ceiling * 2).min(MAX_DELAY);
        (Instant::now() + delay < self.deadline).then_some(delay)
    }
}

/// Extra time for a file of `length` bytes, beyond a single file's retry budget: a second
/// per [`SLOWEST_UPLOAD`] bytes. The single-file deadline (budget plus two request
/// timeouts, at most 220 s) is sized for records of kilobytes; a part of several GB takes
/// minutes even when nothing fails (3 GB: 13 minutes more at the slowest rate still taken
/// for working, far below what a worker reaches in its region), and a deadline that ended
/// every such upload would make compaction fail for good.
pub(super) fn upload_allowance(length: u64) -> Duration {
    Duration::from_secs(length.div_ceil(SLOWEST_UPLOAD))
}

/// A number in [0, 1) from the OS's random source (0.5 if it is unavailable).
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_respects_the_budget() {
        let mut backoff = Backoff::until(Instant::now() + Duration::from_secs(60));
        let delays: Vec<Duration> = (0..8).filter_map(|_| backoff.next_delay()).collect();
        assert_eq!(delays.len(), 8);
        for (n, delay) in delays.iter().enumerate() {
            let ceiling = (FIRST_DELAY * 2u32.pow(n as u32)).min(MAX_DELAY);
            assert!(*delay >= ceiling / 2 && *delay <= ceiling, "{n}: {delay:?}");
        }
        let mut short = Backoff::until(Instant::now() + Duration::from_millis(10));
        assert_eq!(
            short.next_delay(),
            None,
            "a 50 ms wait exceeds a 10 ms budget"
        );
    }
}
