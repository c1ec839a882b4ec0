//! Storage retries counted per request, for the request's log line (`storage_retries`):
//! a retry rate per request shows a struggling store before requests fail.
//!
//! The count lives in a task-local cell around the request's storage work: the sink's
//! retries happen deep inside it, in the same task (a request's writes are joined, not
//! spawned), and threading a counter through every storage call would change the
//! [`super::Sink`] trait for one log field.

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static RETRIES: Cell<u32>;
}

/// Runs `work` and returns its output with the storage retries made inside it.
pub async fn counting_retries<F: Future>(work: F) -> (F::Output, u32) {
    RETRIES
        .scope(Cell::new(0), async move {
            let output = work.await;
            (output, RETRIES.with(Cell::get))
        })
        .await
}

/// Counts one retry for the request running, if any (a compaction or mirror pass runs
/// outside a count: nothing happens).
pub(super) fn count_retry() {
    let _ = RETRIES.try_with(|retries| retries.set(retries.get().saturating_add(1)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_are_counted_inside_the_scope_only() {
        count_retry();
        let ((), retries) = counting_retries(async {
            count_retry();
            futures_util::future::join(async { count_retry() }, async { count_retry() }).await;
        })
        .await;
        assert_eq!(retries, 3);
    }
}
