//! The process-wide budget of request bytes in flight (`MAX_INFLIGHT_BYTES`).
//!
//! Each request's memory is bounded by a multiple of its size (README, "Memory"), but
//! nothing bounded how many large requests run at once: twelve 20 MB events took the
//! process to 13.6 GB. A request now reserves its bytes before its body is read, and
//! holds them until its files are stored. A request that does not fit waits a moment
//! for others to finish, then gets 503 with `Retry-After`: the Atlas side retries, and
//! the worker lives.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::IngestError;

/// How long a request waits for room before it is turned away.
const WAIT: Duration = Duration::from_secs(2);

/// Reservations are counted in KiB, so a budget of any size fits the semaphore's `u32`.
const UNIT: usize = 1024;

/// Bytes a body of unknown length reserves at a time as it arrives.
pub(super) const STEP: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct InflightBudget {
    units: Arc<Semaphore>,
    total_units: u32,
    total_bytes: usize,
}

/// Bytes held in the budget; given back when dropped.
#[derive(Debug)]
pub struct Reservation(OwnedSemaphorePermit);

impl InflightBudget {
    pub fn new(max_bytes: usize) -> InflightBudget {
        let total_units = u32::try_from(max_bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX);
        InflightBudget {
            units: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
            total_bytes: max_bytes,
        }
    }

    /// Reserves `bytes`, waiting up to a moment for room.
    pub async fn reserve(&self, bytes: usize) -> Result<Reservation, IngestError> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1))
            .unwrap_or(u32::MAX)
            .min(self.total_units);
        let acquire = Arc::clone(&self.units).acquire_many_owned(units);
        match tokio::time::timeout(WAIT, acquire).await {
            Ok(Ok(permit)) => Ok(Reservation(permit)),
            _ => {
                tracing::warn!(
                    bytes,
                    budget = self.total_bytes,
                    "request turned away: MAX_INFLIGHT_BYTES in use"
                );
                Err(IngestError::Busy {
                    budget: self.total_bytes,
                })
            }
        }
    }

    /// Grows `reservation` by `bytes`, as [`InflightBudget::reserve`] does. A request
    /// holds at most the whole budget: one that holds it all goes on without more (the
    /// body limits bound it), so no request is refused for its size alone.
    pub async fn extend(
        &self,
        reservation: &mut Reservation,
        bytes: usize,
    ) -> Result<(), IngestError> {
        let held = reservation.0.num_permits();
        let room = (self.total_units as usize).saturating_sub(held) * UNIT;
        if room == 0 {
            return Ok(());
        }
        let Reservation(more) = self.reserve(bytes.min(room)).await?;
        reservation.0.merge(more);
        Ok(())
    }

    /// Bytes free now.
    #[cfg(test)]
    pub fn available_bytes(&self) -> usize {
        self.units.available_permits() * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_share_the_budget_and_wait_briefly_for_room() {
        let budget = InflightBudget::new(10 * UNIT);
        let first = budget.reserve(6 * UNIT).await.expect("fits");
        assert_eq!(budget.available_bytes(), 4 * UNIT);
        // No room: refused after the wait, as busy.
        let refused = budget.reserve(6 * UNIT).await.expect_err("no room");
        assert_eq!(refused.code(), "server_busy");
        // Room made while waiting: admitted.
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.reserve(6 * UNIT).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(first);
        assert!(waiting.await.expect("task").is_ok());
        assert_eq!(budget.available_bytes(), 10 * UNIT);
    }

    #[tokio::test]
    async fn reservations_grow_and_a_request_larger_than_the_budget_takes_all_of_it() {
        let budget = InflightBudget::new(10 * UNIT);
        let mut held = budget.reserve(1).await.expect("fits");
        budget.extend(&mut held, 3 * UNIT).await.expect("fits");
        assert_eq!(budget.available_bytes(), 6 * UNIT);
        drop(held);
        let all = budget
            .reserve(50 * UNIT)
            .await
            .expect("capped at the budget");
        assert_eq!(budget.available_bytes(), 0);
        drop(all);
        assert_eq!(budget.available_bytes(), 10 * UNIT);
    }
}
