//! What the health answer says about the sink: reachable or not, how long ago that was
//! seen, and why not. Kept current by a background probe at most once per interval and by
//! every ingest outcome (a stored file proves the sink reachable, a storage failure marks
//! it unreachable), so answering `GET /health` never costs a storage request.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Sink, SinkError};

/// The last thing seen of the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub at: Instant,
    /// Why the sink was unreachable (a cause without paths or secrets); `None` when it
    /// was reachable.
    pub error: Option<String>,
}

impl Observation {
    pub fn reachable(&self) -> bool {
        self.error.is_none()
    }
}

/// The sink's reachability as last seen, shared by the probe, the ingest and the route.
#[derive(Debug, Default)]
pub struct SinkHealth {
    last: Mutex<Option<Observation>>,
}

impl SinkHealth {
    pub fn new() -> SinkHealth {
        SinkHealth::default()
    }

    /// The last observation; `None` before the first probe has finished.
    pub fn last(&self) -> Option<Observation> {
        self.lock().clone()
    }

    /// The sink answered (a probe, or a file stored).
    pub fn reachable(&self) {
        self.observe(None);
    }

    /// The sink failed (a probe, or a write that gave up).
    pub fn unreachable(&self, error: &SinkError) {
        self.observe(Some(error.cause()));
    }

    /// Records an observation and logs a line when reachability changes (and for the
    /// first one): operators see the moment storage went away and came back.
    fn observe(&self, error: Option<String>) {
        let now = Instant::now();
        let before = self.lock().replace(Observation {
            at: now,
            error: error.clone(),
        });
        let was_reachable = before.map(|seen| seen.reachable());
        match error {
            None if was_reachable != Some(true) => tracing::info!("sink reachable"),
            Some(cause) if was_reachable != Some(false) => {
                tracing::error!(cause = %cause, "sink unreachable")
            }
            _ => {}
        }
    }

    /// Probes `sink` whenever nothing has been seen of it for `interval` (at once at the
    /// start), until `stopping` is cancelled; a probe in flight is abandoned then.
    pub async fn watch(&self, sink: &dyn Sink, interval: Duration, stopping: CancellationToken) {
        loop {
            let due = self
                .last()
                .map_or_else(Instant::now, |seen| seen.at + interval);
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = stopping.cancelled() => return,
            }
            // An ingest outcome may have been seen while waiting: then no probe is needed.
            if self.last().is_some_and(|seen| seen.at.elapsed() < interval) {
                continue;
            }
            tokio::select! {
                outcome = sink.probe() => match outcome {
                    Ok(()) => self.reachable(),
                    Err(error) => self.unreachable(&error),
                },
                () = stopping.cancelled() => return,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Observation>> {
        // Only ever replaced whole: a panic elsewhere cannot leave it half-written.
        self.last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_observation_wins_and_carries_no_path() {
        let health = SinkHealth::new();
        assert_eq!(health.last(), None);
        health.unreachable(&SinkError::Storage {
            operation: "creating",
            path: "changes/db/coll/year=2024/id-7b2269.json".into(),
            detail: "HTTP 503 ServerBusy".into(),
            retryable: true,
        });
        let seen = health.last().expect("observed");
        assert_eq!(seen.error.as_deref(), Some("creating: HTTP 503 ServerBusy"));
        health.reachable();
        assert!(health.last().expect("observed").reachable());
    }
}
